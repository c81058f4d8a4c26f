/**
 * Which build instruction made each layer of an image, from its config (the image history), and
 * that instruction shortened for a table. An image config is untrusted input (it comes off a
 * stick): every field is checked for its type and nothing here throws on a malformed one.
 *
 * The history lists every build step; a step with `empty_layer: true` (ENV, LABEL, CMD, …) made
 * no layer, and the others made the layers of `rootfs.diff_ids` in the same order. That is how
 * the engines themselves pair them (`docker history`), on the classic and the containerd store.
 */

export interface LayerOrigin {
  /** The history entry's `created_by`, in full; "" when the entry has none. */
  createdBy: string;
  /** The entry's `comment` (e.g. "buildkit.dockerfile.v0"), when it has one. */
  comment: string | null;
  created: string | null;
}

export interface ImageLayerHistory {
  /** Per diff_id, in order: the history entry that made it, or null when none maps to it. */
  origins: (LayerOrigin | null)[];
  /** The config has no history at all (e.g. an image assembled by hand, or by a tool that writes none). */
  noHistory: boolean;
  /**
   * Layer-making history entries and diff_ids differ in number: the pairing is then only as good
   * as the order (the engines pair them in order too; surplus entries, or layers, pair with nothing).
   */
  mismatch: { historyLayers: number; diffIds: number } | null;
}

/** Pairs a parsed image config's history entries with its rootfs.diff_ids. */
export function layerHistory(config: unknown): ImageLayerHistory {
  const c = isObject(config) ? config : {};
  const rootfs = isObject(c.rootfs) ? c.rootfs : {};
  const diffIds = Array.isArray(rootfs.diff_ids) ? rootfs.diff_ids : [];
  const history = Array.isArray(c.history) ? c.history : [];
  const origins: (LayerOrigin | null)[] = diffIds.map(() => null);
  if (history.length === 0) return { origins, noHistory: true, mismatch: null };
  let layer = 0;
  for (const entry of history) {
    const e = isObject(entry) ? entry : {};
    if (e.empty_layer === true) continue;
    if (layer < origins.length) {
      origins[layer] = {
        createdBy: typeof e.created_by === 'string' ? e.created_by : '',
        comment: typeof e.comment === 'string' && e.comment !== '' ? e.comment : null,
        created: typeof e.created === 'string' ? e.created : null,
      };
    }
    layer++;
  }
  return { origins, noHistory: false, mismatch: layer === diffIds.length ? null : { historyLayers: layer, diffIds: diffIds.length } };
}

/** What a table shows when a layer has no history entry, or its entry no instruction. */
export const NO_HISTORY = '(no history)';

/**
 * The instruction as a person reads it in one table cell: the shell wrapper the builders record
 * (`/bin/sh -c #(nop) `, `/bin/sh -c `, BuildKit's `RUN /bin/sh -c `, and the classic builder's
 * `|N ARG=v …` prefix of a RUN with build arguments) and BuildKit's ` # buildkit` marker dropped,
 * the digests of COPY sources (`file:<64 hex>`) cut to 12 digits, whitespace collapsed, cut to
 * `width` characters with an ellipsis.
 */
export function shortInstruction(createdBy: string | null, width = 60): string {
  let s = (createdBy ?? '').replace(/\s+/g, ' ').trim();
  if (s === '') return NO_HISTORY;
  s = s.replace(/^\|\d+(?: \S+=\S*)* (?=\/bin\/sh -c )/, '');
  s = s.replace(/^\/bin\/sh -c #\(nop\) */, '').replace(/^(RUN )?\/bin\/sh -c /, '$1');
  s = s.replace(/ # buildkit$/, '').trim();
  // The classic builder names copied content by a full digest that would crowd out where it went.
  s = s.replace(/\b(file|dir|multi):([0-9a-f]{12})[0-9a-f]{52}\b/g, '$1:$2');
  const max = Math.max(8, Math.floor(width));
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
