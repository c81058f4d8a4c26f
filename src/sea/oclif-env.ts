/**
 * Imported first by main.ts, so that it runs before @oclif/core loads: oclif then skips checking
 * Node against its own `engines` (>= 18; ferry's executable carries its Node), which loads semver
 * for ~15 ms of every command's start. bin/ferry does the same.
 */
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= '1';
