/**
 * The one place that turns SIGINT and SIGTERM into an exit. While a service holds something to
 * undo (create's partial bundle directory), an interruption runs that cleanup and exits 130;
 * outside that window the signals keep their default effect.
 *
 * The cleanup is synchronous on purpose: the service's own writes are still in flight when the
 * signal arrives, and an asynchronous removal would race them (a write landing after the removal
 * recreates what was removed; the kill campaign caught exactly that). Nothing else runs between a
 * synchronous cleanup and the exit.
 */

/** Installs the handlers; the returned function removes them (the service is done with its cleanup). */
export function exitOnInterrupt(cleanup: () => void): () => void {
  const onSignal = () => {
    try {
      cleanup();
    } finally {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
