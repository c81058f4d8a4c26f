/**
 * How a finished command leaves the process. The entries exit explicitly (a lingering socket or
 * zstd worker must never keep a finished command alive), but `process.exit` drops whatever stdout
 * and stderr still hold: on Linux a write to a pipe whose buffer is full is queued, not blocked on.
 * A script reading a large `--json` document (the inventory of a busy engine is hundreds of KB)
 * got it cut short. So wait until both streams have handed everything to the OS, then exit.
 */
export async function exitWhenFlushed(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map(drained));
  process.exit(code);
}

function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.writableLength === 0 || stream.destroyed) return resolve();
    // A reader that went away (EPIPE) will never drain the stream: nothing more can be delivered.
    stream.once('error', () => resolve());
    stream.once('close', () => resolve());
    stream.once('drain', () => resolve());
  });
}
