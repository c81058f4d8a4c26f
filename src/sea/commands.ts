/**
 * Every command, by id, for the single executable: it cannot discover commands by reading
 * dist/commands (there is no dist inside it), so oclif gets this explicit list instead.
 * test/unit/sea-commands.test.ts fails when a command file exists that is not listed here.
 */
import BundleCreate from '../commands/bundle/create.js';
import BundleDiff from '../commands/bundle/diff.js';
import BundleInspect from '../commands/bundle/inspect.js';
import BundleInstall from '../commands/bundle/install.js';
import BundleVerify from '../commands/bundle/verify.js';
import CacheLs from '../commands/cache/ls.js';
import CachePrune from '../commands/cache/prune.js';
import HostInventory from '../commands/host/inventory.js';
import HostRollback from '../commands/host/rollback.js';
import HostSetup from '../commands/host/setup.js';
import HostStatus from '../commands/host/status.js';
import KeysGenerate from '../commands/keys/generate.js';

export const COMMANDS = {
  'bundle:create': BundleCreate,
  'bundle:diff': BundleDiff,
  'bundle:inspect': BundleInspect,
  'bundle:install': BundleInstall,
  'bundle:verify': BundleVerify,
  'cache:ls': CacheLs,
  'cache:prune': CachePrune,
  'host:inventory': HostInventory,
  'host:rollback': HostRollback,
  'host:setup': HostSetup,
  'host:status': HostStatus,
  'keys:generate': KeysGenerate,
};
