/**
 * The one place that turns SIGINT and SIGTERM into an exit. While a service holds something to
 * undo (create's partial bundle directory), an interruption runs that cleanup and exits 130;
 * outside that window the signals keep their default effect.
 */

/** Installs the handlers; the returned function removes them (the service is done with its cleanup). */
export function exitOnInterrupt(cleanup: () => Promise<void>): () => void {
  const onSignal = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
