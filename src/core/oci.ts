/**
 * The OCI image layout side of a bundle, so that stock tools (skopeo, crane, containerd) can read
 * a complete bundle without ferry. Pure: returns the exact bytes to write, whose digests the
 * manifest then records.
 */
import { sha256Digest } from './digest.js';
import { LAYER_MEDIA_TYPE } from './manifest.js';

export const OCI_LAYOUT = Buffer.from(`${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

/**
 * Layers a delta bundle leaves out are described by their uncompressed digest and size: the
 * descriptor stays true, and OCI tools say the blob is absent rather than reading a wrong one.
 */
export function imageManifest(config: { digest: string; size: number }, layers: { digest: string; size: number; absent?: boolean }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: { mediaType: OCI_CONFIG_MEDIA_TYPE, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: l.absent ? 'application/vnd.oci.image.layer.v1.tar' : LAYER_MEDIA_TYPE, digest: l.digest, size: l.size })),
    }),
  );
}

/**
 * One index entry per reference, so `skopeo inspect oci:BUNDLE:REF` works with the names people
 * know (the OCI layout allows several entries for one manifest).
 */
export function imageIndex(
  entries: { manifest: { digest: string; size: number }; refs: string[]; os: string; architecture: string }[],
): Buffer {
  const manifests: Descriptor[] = [];
  for (const e of entries) {
    const refs = e.refs.length > 0 ? e.refs : [undefined];
    for (const ref of refs) {
      manifests.push({
        mediaType: OCI_MANIFEST_MEDIA_TYPE,
        digest: e.manifest.digest,
        size: e.manifest.size,
        platform: { os: e.os, architecture: e.architecture },
        ...(ref ? { annotations: { [REF_NAME_ANNOTATION]: ref } } : {}),
      });
    }
  }
  return Buffer.from(`${JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX_MEDIA_TYPE, manifests }, null, 2)}\n`);
}

export const DOCKER_MANIFEST_MEDIA_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_CONFIG_MEDIA_TYPE = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_MEDIA_TYPE = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_LAYER_GZIP_MEDIA_TYPE = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

/**
 * The image ID the containerd image store gives an image it loads from a docker-archive: that
 * store names images by the digest of their manifest, and for a docker-archive (which has none)
 * its importer writes a Docker schema 2 manifest of the config and of each layer entry exactly as
 * the archive carried it — compact JSON, in Go's field order. Being a digest over the config's
 * digest, finding an image by this ID proves which config it has, as the ID does on a classic store.
 */
export function dockerArchiveImportId(config: { digest: string; size: number }, layers: { digest: string; size: number; gzip?: boolean }[]): string {
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST_MEDIA_TYPE,
    config: { mediaType: DOCKER_CONFIG_MEDIA_TYPE, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.gzip ? DOCKER_LAYER_GZIP_MEDIA_TYPE : DOCKER_LAYER_MEDIA_TYPE, digest: l.digest, size: l.size })),
  });
  return sha256Digest(Buffer.from(manifest));
}
