/** A container's own health-check timing, to tell a settled "unhealthy" from one about to pass. */
import type { Engine } from './engine.js';
import { engineError } from './engine-inventory.js';

/** Docker's defaults when the image and the compose file set none. */
const DEFAULT_INTERVAL_NS = 30e9;
const DEFAULT_TIMEOUT_NS = 30e9;

/** How long one more round of the check can take: its interval plus its timeout, in ms. */
export async function checkRoundMs(engine: Engine, id: string): Promise<number> {
  try {
    const hc = (await engine.api.getContainer(id).inspect()).Config?.Healthcheck as { Interval?: number; Timeout?: number } | undefined;
    return ((hc?.Interval || DEFAULT_INTERVAL_NS) + (hc?.Timeout || DEFAULT_TIMEOUT_NS)) / 1e6;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return 0;
    throw engineError(engine, e);
  }
}
