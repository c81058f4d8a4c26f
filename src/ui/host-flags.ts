/**
 * Flag groups of the commands that work on a host: the state directory and compose. Each group
 * comes with the one function that turns its parsed values into what a service takes.
 */
import { Flags } from '@oclif/core';
import { DEFAULT_DRAIN_SECONDS } from '../core/compose-colours.js';
import { DEFAULT_STATE_DIR } from '../core/state.js';

export const stateDirFlags = {
  'state-dir': Flags.string({
    description: 'where ferry keeps releases and state on this host',
    env: 'FERRY_STATE_DIR',
    default: DEFAULT_STATE_DIR,
  }),
};

export function stateDirFrom(flags: { 'state-dir': string }): { stateDir: string } {
  return { stateDir: flags['state-dir'] };
}

export const composeFlags = {
  'compose-cmd': Flags.string({ description: 'compose command to use, e.g. "docker-compose" or "docker compose" (default: v2 when present, else v1)' }),
  'wait-timeout': Flags.integer({ description: 'seconds to wait for services to become healthy', default: 120, min: 1 }),
  drain: Flags.integer({ description: 'blue/green: seconds the old colour keeps running after the switch, for requests in flight, before it is stopped', default: DEFAULT_DRAIN_SECONDS, min: 0 }),
};

export interface ComposeOptions {
  composeCmd: string | undefined;
  waitTimeoutMs: number;
  drainMs: number;
}

export function composeOptionsFrom(flags: { 'compose-cmd'?: string | undefined; 'wait-timeout': number; drain: number }): ComposeOptions {
  return { composeCmd: flags['compose-cmd'], waitTimeoutMs: flags['wait-timeout'] * 1000, drainMs: flags.drain * 1000 };
}
