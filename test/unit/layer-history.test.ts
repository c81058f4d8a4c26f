import { describe, expect, it } from 'vitest';
import { layerHistory, NO_HISTORY, shortInstruction } from '../../src/core/layer-history.js';

const d = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('layerHistory', () => {
  it('pairs layer-making entries with diff_ids in order, skipping empty_layer ones (classic builder)', () => {
    const h = layerHistory({
      rootfs: { type: 'layers', diff_ids: [d(1), d(2), d(3)] },
      history: [
        { created_by: '/bin/sh -c #(nop) COPY file:abc in /bin/busybox ' },
        { created_by: '/bin/sh -c #(nop)  ENV A=1', empty_layer: true },
        { created_by: '/bin/sh -c echo hi > /x' },
        { created_by: '/bin/sh -c #(nop)  LABEL x=y', empty_layer: true },
        { created_by: 'COPY app /app # buildkit', comment: 'buildkit.dockerfile.v0', created: '2026-01-01T00:00:00Z' },
        { created_by: '/bin/sh -c #(nop)  CMD ["/app"]', empty_layer: true },
      ],
    });
    expect(h.noHistory).toBe(false);
    expect(h.mismatch).toBeNull();
    expect(h.origins.map((o) => o?.createdBy)).toEqual(['/bin/sh -c #(nop) COPY file:abc in /bin/busybox ', '/bin/sh -c echo hi > /x', 'COPY app /app # buildkit']);
    expect(h.origins[2]).toMatchObject({ comment: 'buildkit.dockerfile.v0', created: '2026-01-01T00:00:00Z' });
  });

  it('a config without history: every layer unpaired, said so', () => {
    const h = layerHistory({ rootfs: { diff_ids: [d(1), d(2)] } });
    expect(h).toEqual({ origins: [null, null], noHistory: true, mismatch: null });
    expect(layerHistory({ rootfs: { diff_ids: [d(1)] }, history: [] }).noHistory).toBe(true);
  });

  it('counts that differ pair in order as far as they go and report the mismatch', () => {
    const fewer = layerHistory({ rootfs: { diff_ids: [d(1), d(2)] }, history: [{ created_by: 'a' }] });
    expect(fewer.origins.map((o) => o?.createdBy ?? null)).toEqual(['a', null]);
    expect(fewer.mismatch).toEqual({ historyLayers: 1, diffIds: 2 });
    const more = layerHistory({ rootfs: { diff_ids: [d(1)] }, history: [{ created_by: 'a' }, { created_by: 'b' }] });
    expect(more.origins.map((o) => o?.createdBy)).toEqual(['a']);
    expect(more.mismatch).toEqual({ historyLayers: 2, diffIds: 1 });
  });

  it('never throws on a hostile or malformed config', () => {
    for (const c of [null, 42, 'x', [], { rootfs: 'x', history: 'y' }, { rootfs: { diff_ids: [d(1)] }, history: [null, 7, { created_by: 5, empty_layer: 'yes' }] }]) {
      expect(() => layerHistory(c)).not.toThrow();
    }
    // empty_layer must be exactly true to skip; a non-string created_by reads as none.
    expect(layerHistory({ rootfs: { diff_ids: [d(1)] }, history: [{ created_by: 5, empty_layer: 'yes' }] }).origins[0]).toEqual({ createdBy: '', comment: null, created: null });
  });
});

describe('shortInstruction', () => {
  it('strips the shell wrappers builders record and collapses whitespace', () => {
    expect(shortInstruction('/bin/sh -c #(nop)  ENV APP_VERSION=1.0.0')).toBe('ENV APP_VERSION=1.0.0');
    expect(shortInstruction('/bin/sh -c echo "${APP_VERSION}"   >\n /app/VERSION')).toBe('echo "${APP_VERSION}" > /app/VERSION');
    expect(shortInstruction('|1 APP_VERSION=1.0.0 /bin/sh -c echo $APP_VERSION')).toBe('echo $APP_VERSION');
    expect(shortInstruction('RUN /bin/sh -c apk add curl # buildkit')).toBe('RUN apk add curl');
    expect(shortInstruction('COPY web / # buildkit')).toBe('COPY web /');
    expect(shortInstruction('/bin/busybox sh -c /bin/busybox --install -s /bin')).toBe('/bin/busybox sh -c /bin/busybox --install -s /bin');
  });

  it('cuts COPY source digests so the destination shows', () => {
    const hex = '73e2b2d48642b21b357384b0cb81c1869cc5e0c48a00f61553756196058304b9';
    expect(shortInstruction(`/bin/sh -c #(nop) COPY file:${hex} in /bin/busybox `)).toBe('COPY file:73e2b2d48642 in /bin/busybox');
  });

  it('cuts to the width with an ellipsis, never below a few characters', () => {
    const long = `/bin/sh -c ${'x'.repeat(200)}`;
    expect(shortInstruction(long)).toHaveLength(60);
    expect(shortInstruction(long).endsWith('…')).toBe(true);
    expect(shortInstruction(long, 30)).toBe(`${'x'.repeat(29)}…`);
    expect(shortInstruction(long, 2)).toHaveLength(8);
    expect(shortInstruction('ENV A=1', 7)).toBe('ENV A=1');
  });

  it('says "(no history)" for an empty or missing instruction', () => {
    expect(shortInstruction('')).toBe(NO_HISTORY);
    expect(shortInstruction('   ')).toBe(NO_HISTORY);
    expect(shortInstruction(null)).toBe(NO_HISTORY);
  });
});
