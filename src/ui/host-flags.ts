/** Flags shared by commands that work on a host's state. */
import { Flags } from '@oclif/core';
import { DEFAULT_STATE_DIR } from '../core/state.js';

export const stateDirFlag = Flags.string({
  description: 'where ferry keeps releases and state on this host',
  env: 'FERRY_STATE_DIR',
  default: DEFAULT_STATE_DIR,
});

export const composeFlags = {
  'compose-cmd': Flags.string({ description: 'compose command to use, e.g. "docker-compose" or "docker compose" (default: v2 when present, else v1)' }),
  'wait-timeout': Flags.integer({ description: 'seconds to wait for services to become healthy', default: 120, min: 1 }),
};
