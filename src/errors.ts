/**
 * Typed errors. Every failure a user can cause or meet ends up as one of these, and the base
 * command turns it into a message and an exit code in one place. The codes are a contract with
 * scripts: they are listed in every command's --help and in the README, and never reused.
 */

export const ExitCode = {
  ok: 0,
  bug: 1,
  usage: 2,
  trust: 3,
  integrity: 4,
  policy: 5,
  hostPrecondition: 6,
  deployRestored: 7,
  deployFailed: 8,
  buildInput: 10,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `Exit codes:
  0 ok · 1 unexpected error (a bug: please report it) · 2 usage
  3 trust: signature missing, invalid, untrusted key, wrong namespace
  4 integrity: bundle file missing, extra, wrong size or digest
  5 policy: downgrade, wrong host, expired
  6 host precondition: engine unreachable, no space, missing layers, no compose
  7 deploy failed, previous release restored · 8 deploy and restore failed
  10 build input: image not found, bad definition, unreadable key, output exists`;

/** What an error code means to a script: its exit code and, in one line, when it happens. */
export interface ErrorCodeInfo {
  /** The exit code; `fleet`: the exit code of the first host that failed, in the order given. */
  exit: ExitCodeValue | 'fleet';
  meaning: string;
}

/**
 * Every error code ferry raises (`FerryError.code`, the `code` of `--json`'s error), with its exit
 * code. Listed in README.md under "Exit codes"; test/unit/error-codes.test.ts fails when src uses a
 * code missing here or this list holds one src no longer uses.
 */
export const ERROR_CODES = {
  // 1: a bug
  UNEXPECTED: { exit: ExitCode.bug, meaning: 'an error ferry did not expect: a bug, please report it' },
  ED25519_EXPORT: { exit: ExitCode.bug, meaning: 'the runtime could not export an ed25519 public key' },
  EMPTY_NAMESPACE: { exit: ExitCode.bug, meaning: 'a signature was requested for an empty namespace' },
  INVENTORY_SELF_CHECK: { exit: ExitCode.bug, meaning: 'the inventory built from the engine fails ferry\'s own check of the format' },
  // 2: usage
  USAGE: { exit: ExitCode.usage, meaning: 'bad flags or arguments (unknown flag, missing argument, unusable value)' },
  BAD_FLAG: { exit: ExitCode.usage, meaning: 'a flag\'s value is malformed: --host, --ssh, --remote-docker-socket' },
  BAD_PART_SIZE: { exit: ExitCode.usage, meaning: '--max-part-size is below 1 MiB or above FAT32\'s file size limit' },
  BAD_SSH_TARGET: { exit: ExitCode.usage, meaning: 'an --ssh target is not [user@]host[:port]' },
  SSH_FLAG_WITHOUT_SSH: { exit: ExitCode.usage, meaning: 'an SSH-only flag was given without --ssh' },
  ONE_HOST_ONLY: { exit: ExitCode.usage, meaning: 'a one-host command was given several --ssh targets' },
  SSH_CONFIG_INVALID: { exit: ExitCode.usage, meaning: 'the SSH configuration file has a line ferry cannot use' },
  SSH_CONFIG_UNREADABLE: { exit: ExitCode.usage, meaning: 'the SSH configuration file cannot be read' },
  IDENTITY_UNREADABLE: { exit: ExitCode.usage, meaning: 'the --identity file cannot be read' },
  IDENTITY_UNUSABLE: { exit: ExitCode.usage, meaning: 'the --identity file is not a key ferry can use (e.g. passphrase-protected)' },
  BUNDLE_NOT_FOUND: { exit: ExitCode.usage, meaning: 'the path given is not a bundle directory' },
  SETUP_NEEDS_EXECUTABLE: { exit: ExitCode.usage, meaning: 'host setup runs under node: run it from the ferry executable, or name one with --executable' },
  SETUP_TRUST_DIFFERS: { exit: ExitCode.usage, meaning: 'host setup: the host\'s allowed_signers lists other keys (--force replaces it)' },
  STACK_UNKNOWN: { exit: ExitCode.usage, meaning: 'no releases of that stack are recorded on the host' },
  RELEASE_UNKNOWN: { exit: ExitCode.usage, meaning: 'rollback --to names a release the host does not keep' },
  NO_OLDER_RELEASE: { exit: ExitCode.usage, meaning: 'rollback: no kept release is older than the current one' },
  SWARM_FLAG_WITHOUT_SWARM: { exit: ExitCode.usage, meaning: 'a swarm-only flag (--node-ssh, --allow-partial-nodes) was given without --swarm' },
  // 3: trust
  TRUST_UNSIGNED: { exit: ExitCode.trust, meaning: 'the bundle has no signature (and no --allow-unsigned)' },
  TRUST_SIGNATURE_MALFORMED: { exit: ExitCode.trust, meaning: 'the signature file is not a valid SSH signature' },
  TRUST_SIGNATURE_INVALID: { exit: ExitCode.trust, meaning: 'the signature does not match the manifest' },
  TRUST_WRONG_NAMESPACE: { exit: ExitCode.trust, meaning: 'the signature was made for another namespace than "ferry-bundle"' },
  TRUST_UNTRUSTED_KEY: { exit: ExitCode.trust, meaning: 'the signing key is not in the trust file for this namespace' },
  TRUST_KEY_REVOKED: { exit: ExitCode.trust, meaning: 'the signing key is listed in the revoked-keys file' },
  TRUST_STORE_MISSING: { exit: ExitCode.trust, meaning: 'the trust file (--trust, FERRY_TRUST) cannot be read' },
  TRUST_STORE_INVALID: { exit: ExitCode.trust, meaning: 'a line of the trust file cannot be read' },
  TRUST_REVOKED_UNREADABLE: { exit: ExitCode.trust, meaning: 'the revoked-keys file (--revoked, FERRY_REVOKED) cannot be read' },
  TRUST_REVOKED_INVALID: { exit: ExitCode.trust, meaning: 'a line of the revoked-keys file cannot be read' },
  SETUP_EXECUTABLE_UNVERIFIED: { exit: ExitCode.trust, meaning: 'host setup: the executable is not the one the signed bundle lists (or the bundle carries none)' },
  SHA256SUMS_SIGNATURE_INVALID: { exit: ExitCode.trust, meaning: 'SHA256SUMS.sig is missing, unreadable or does not verify over SHA256SUMS, or is not by the key that signed ferry.json' },
  HOST_KEY_CHANGED: { exit: ExitCode.trust, meaning: 'an SSH host presented another key than known_hosts lists' },
  HOST_KEY_REVOKED: { exit: ExitCode.trust, meaning: 'an SSH host presented a key known_hosts marks as revoked' },
  // 4: integrity
  BUNDLE_INTEGRITY: { exit: ExitCode.integrity, meaning: 'bundle files are missing, extra, or of the wrong size or digest' },
  MANIFEST_MISSING: { exit: ExitCode.integrity, meaning: 'the bundle has no ferry.json' },
  MANIFEST_UNREADABLE: { exit: ExitCode.integrity, meaning: 'ferry.json cannot be read' },
  MANIFEST_INVALID: { exit: ExitCode.integrity, meaning: 'ferry.json is not a valid manifest' },
  SHA256SUMS_INVALID: { exit: ExitCode.integrity, meaning: 'SHA256SUMS is unreadable, removed, or does not list exactly the bundle\'s files with the digests ferry.json gives' },
  LOADED_IMAGE_MISMATCH: { exit: ExitCode.integrity, meaning: 'after loading, an image on the engine is absent or has other layers' },
  ENGINE_ARCHIVE_INVALID: { exit: ExitCode.integrity, meaning: 'the engine\'s save archive, or its layer store on this machine, cannot be read' },
  ENGINE_LAYER_MISMATCH: { exit: ExitCode.integrity, meaning: 'the engine\'s save archive does not match the image\'s config' },
  DELTA_INVALID: { exit: ExitCode.integrity, meaning: 'a layer delta is malformed (ranges outside or overlapping, truncated, wrong sizes) or does not rebuild its layer\'s diffID: nothing loaded' },
  // 5: policy
  BUNDLE_EXPIRED: { exit: ExitCode.policy, meaning: 'the bundle is past its expiry date' },
  WRONG_HOST: { exit: ExitCode.policy, meaning: 'the bundle has no configuration for this host' },
  DOWNGRADE: { exit: ExitCode.policy, meaning: 'the bundle\'s sequence is lower than one the host already installed' },
  // 6: host precondition
  ENGINE_UNREACHABLE: { exit: ExitCode.hostPrecondition, meaning: 'the container engine cannot be reached' },
  ENGINE_ERROR: { exit: ExitCode.hostPrecondition, meaning: 'the container engine answered with an error' },
  NO_COMPOSE: { exit: ExitCode.hostPrecondition, meaning: 'no working Compose (v2 or v1, or the --compose-cmd given) on the host' },
  NO_SPACE: { exit: ExitCode.hostPrecondition, meaning: 'too little space or inodes on the host for staging or loading' },
  MISSING_BASE_LAYERS: { exit: ExitCode.hostPrecondition, meaning: 'the engine lacks layers the bundle assumes it holds (--base)' },
  MISSING_REFERENCE_LAYERS: { exit: ExitCode.hostPrecondition, meaning: 'the engine lacks a layer a delta of the bundle is rebuilt from (named with the layer and image that need it): nothing loaded' },
  DELTA_REFERENCE_INEXACT: { exit: ExitCode.hostPrecondition, meaning: 'the engine does not give a delta\'s reference layer back byte for byte, so the delta cannot be rebuilt here (use a --no-delta bundle): nothing loaded' },
  HOST_PATHS_MISSING: { exit: ExitCode.hostPrecondition, meaning: 'host paths the stack reads do not exist on the host' },
  HOST_BUSY: { exit: ExitCode.hostPrecondition, meaning: 'another ferry is working on this host' },
  BLUE_GREEN_UNSUPPORTED: { exit: ExitCode.hostPrecondition, meaning: 'blue/green cannot run with this engine and Compose (Compose v1 on Docker 25+ cannot update the front in place)' },
  HOSTNAME_UNKNOWN: { exit: ExitCode.hostPrecondition, meaning: 'the remote host\'s name cannot be read (to pick its override)' },
  LOAD_FAILED: { exit: ExitCode.hostPrecondition, meaning: 'loading images into the engine failed; nothing was switched' },
  STATE_DIR_UNWRITABLE: { exit: ExitCode.hostPrecondition, meaning: 'the state directory cannot be created' },
  STATE_UNREADABLE: { exit: ExitCode.hostPrecondition, meaning: 'a stack\'s recorded state cannot be read' },
  OUTPUT_UNWRITABLE: { exit: ExitCode.hostPrecondition, meaning: 'host inventory cannot write its --out file' },
  HOST_KEY_UNKNOWN: { exit: ExitCode.hostPrecondition, meaning: 'the SSH host\'s key is not in known_hosts (see --accept-new-host-key)' },
  KNOWN_HOSTS_UNREADABLE: { exit: ExitCode.hostPrecondition, meaning: 'a known_hosts file cannot be read' },
  SWARM_NOT_MANAGER: { exit: ExitCode.hostPrecondition, meaning: '--swarm: the engine is not a swarm manager (a worker, or in no swarm)' },
  SWARM_NODE_FAILED: { exit: ExitCode.hostPrecondition, meaning: '--swarm: some nodes could not be loaded (each named); nothing was deployed' },
  SWARM_NODE_NOT_READY: { exit: ExitCode.hostPrecondition, meaning: '--swarm: a node is not ready (down, disconnected) in the swarm' },
  SWARM_NODE_NO_ADDRESS: { exit: ExitCode.hostPrecondition, meaning: '--swarm: a node has no address to reach it at (see --node-ssh)' },
  SWARM_NO_DOCKER_CLI: { exit: ExitCode.hostPrecondition, meaning: '--swarm: no docker CLI where the manager is, to run docker stack deploy' },
  SWARM_PORT_UNSUPPORTED: { exit: ExitCode.hostPrecondition, meaning: '--swarm: a service publishes a port Swarm cannot publish' },
  SWARM_NOT_SWARM_RELEASE: { exit: ExitCode.hostPrecondition, meaning: 'host rollback --swarm: the release was not installed onto a swarm (no stack file)' },
  KNOWN_HOSTS_UNWRITABLE: { exit: ExitCode.hostPrecondition, meaning: 'a new host key cannot be added to known_hosts' },
  SSH_NO_IDENTITY: { exit: ExitCode.hostPrecondition, meaning: 'no key to log in with (no --identity, agent, IdentityFile or default key)' },
  SSH_AUTH_FAILED: { exit: ExitCode.hostPrecondition, meaning: 'the SSH host refused every key offered' },
  SSH_UNREACHABLE: { exit: ExitCode.hostPrecondition, meaning: 'the SSH host cannot be reached or does not answer in time' },
  SSH_FAILED: { exit: ExitCode.hostPrecondition, meaning: 'the SSH connection failed' },
  SSH_CONNECTION_LOST: { exit: ExitCode.hostPrecondition, meaning: 'the SSH connection was lost during the command' },
  // 7 and 8: deploy
  DEPLOY_FAILED_RESTORED: { exit: ExitCode.deployRestored, meaning: 'the new release failed; the previous one was restored and is healthy' },
  DEPLOY_FAILED_NO_PREVIOUS: { exit: ExitCode.deployRestored, meaning: 'the new release failed and was stopped; there was no previous release' },
  DEPLOY_FAILED_KEPT: { exit: ExitCode.deployRestored, meaning: 'blue/green: the new colour failed before the switch and was removed; the previous release kept serving' },
  RESTORE_FAILED: { exit: ExitCode.deployFailed, meaning: 'the new release failed and restoring the previous one failed too' },
  // 10: build input and output medium
  DEFINITION_NOT_FOUND: { exit: ExitCode.buildInput, meaning: 'no ferry.yaml at the path given' },
  DEFINITION_INVALID: { exit: ExitCode.buildInput, meaning: 'ferry.yaml is not a valid bundle definition' },
  DEFINITION_FILE_MISSING: { exit: ExitCode.buildInput, meaning: 'a file ferry.yaml names does not exist' },
  YAML_INVALID: { exit: ExitCode.buildInput, meaning: 'a YAML file cannot be parsed' },
  COMPOSE_INVALID: { exit: ExitCode.buildInput, meaning: 'Compose refused the project, or its model is not usable' },
  BLUE_GREEN_INVALID: { exit: ExitCode.buildInput, meaning: 'x-ferry switch, front or shared is malformed or names no service, or a coloured service sets container_name' },
  BLUE_GREEN_PORT: { exit: ExitCode.buildInput, meaning: 'blue/green: a service that runs once per colour publishes a host port' },
  BLUE_GREEN_VOLUME: { exit: ExitCode.buildInput, meaning: 'blue/green: a service that runs once per colour mounts a named volume (declare its owner shared)' },
  COMPOSE_VARIABLE_UNSET: { exit: ExitCode.buildInput, meaning: 'the compose project requires a variable that is not set' },
  COMPOSE_ENV_FILES: { exit: ExitCode.buildInput, meaning: 'Compose v1 reads one env file and ferry.yaml lists several' },
  COMPOSE_NO_IMAGE: { exit: ExitCode.buildInput, meaning: 'a service has neither image: nor build:' },
  COMPOSE_IMAGE_INVALID: { exit: ExitCode.buildInput, meaning: 'a service\'s image is not a complete reference (an empty variable?)' },
  COMPOSE_PROFILE_DEPENDENCY: { exit: ExitCode.buildInput, meaning: 'a service depends on one whose profile is not enabled' },
  PROJECT_FILE_INVALID: { exit: ExitCode.buildInput, meaning: 'a project file the stack reads cannot travel (e.g. outside the project directory)' },
  PROJECT_FILE_MISSING: { exit: ExitCode.buildInput, meaning: 'a project file the stack reads does not exist or vanished' },
  PROJECT_FILE_UNREADABLE: { exit: ExitCode.buildInput, meaning: 'a project file cannot be read, or is not a regular file' },
  IMAGE_NOT_FOUND: { exit: ExitCode.buildInput, meaning: 'an image the stack runs is not on the build engine' },
  IMAGE_NOT_BUILT: { exit: ExitCode.buildInput, meaning: 'a service with build: has no built image on the engine' },
  BASE_NOT_FOUND: { exit: ExitCode.buildInput, meaning: 'a --base path does not exist' },
  BASE_INVALID: { exit: ExitCode.buildInput, meaning: 'a --base cannot be read as a previous bundle or a host inventory' },
  INVENTORY_INVALID: { exit: ExitCode.buildInput, meaning: 'a host inventory is not a valid inventory document' },
  KEY_UNREADABLE: { exit: ExitCode.buildInput, meaning: 'the signing key cannot be read' },
  KEY_NOT_OPENSSH: { exit: ExitCode.buildInput, meaning: 'the signing key is not an OpenSSH private key' },
  KEY_NOT_ED25519: { exit: ExitCode.buildInput, meaning: 'the signing key is not an ed25519 key' },
  KEY_ENCRYPTED: { exit: ExitCode.buildInput, meaning: 'the signing key is protected by a passphrase' },
  KEY_EXISTS: { exit: ExitCode.buildInput, meaning: 'keys generate: the key file exists (see --force)' },
  KEY_WRITE_FAILED: { exit: ExitCode.buildInput, meaning: 'keys generate cannot write the key files' },
  OUTPUT_EXISTS: { exit: ExitCode.buildInput, meaning: 'the --out directory already exists' },
  NO_SPACE_ON_OUTPUT: { exit: ExitCode.buildInput, meaning: 'the output medium is, or would become, full (see --force)' },
  OUTPUT_FILE_TOO_BIG: { exit: ExitCode.buildInput, meaning: 'the output medium refuses a file that large (see --max-part-size)' },
  OUTPUT_READ_ONLY: { exit: ExitCode.buildInput, meaning: 'the output medium is read-only' },
  OUTPUT_IO_ERROR: { exit: ExitCode.buildInput, meaning: 'the output medium failed to write, or lost files' },
  OUTPUT_GONE: { exit: ExitCode.buildInput, meaning: 'the output medium or directory disappeared' },
  OUTPUT_NOT_WRITABLE: { exit: ExitCode.buildInput, meaning: 'no permission to write the output' },
  STRICT_WARNINGS: { exit: ExitCode.buildInput, meaning: 'create --strict (or ferry.yaml strict: true): a warning refused the bundle; none was written' },
  FERRY_EXECUTABLE_UNUSABLE: { exit: ExitCode.buildInput, meaning: 'create --with-ferry: the executable does not run here (build it with npm run package) or changed while copied' },
  // a fleet
  FLEET_FAILED: { exit: 'fleet', meaning: 'bundle install or host status --ssh a,b,c: some hosts failed (each host\'s code is in the result)' },
} as const satisfies Record<string, ErrorCodeInfo>;
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Every warning code (`Warning.code`, the `warnings` of `--json`): something the run did anyway
 * that a person should know. Listed in README.md beside the error codes, checked by the same test.
 */
export const WARNING_CODES = {
  UNSIGNED: 'bundle create without --sign-key: the bundle is unsigned',
  UNSIGNED_ACCEPTED: 'an unsigned bundle was accepted (--allow-unsigned)',
  TRUST_FILE_WRITABLE: 'the trust or revoked-keys file can be changed by others than root',
  SECRET_IN_BUNDLE: 'a secret file travels in the bundle in the clear (see --exclude-secrets)',
  NO_HEALTHCHECK: 'a service has no health check: the host can only see that it started',
  NO_RESTART_POLICY: 'a service has no restart policy',
  RUNS_AS_ROOT: 'a service runs as root',
  MOUNTS_LOG_DIR: 'a service mounts a host directory for logs',
  MOUNTS_CONFIG_DIR: 'a service mounts a host config directory',
  NO_SPACE_ON_OUTPUT: 'the output medium looks too small; writing anyway (--force)',
  PARTIAL_LOAD_UNSAFE: '--splice never: the engine may refuse a partial archive',
  COMPOSE_V1_RECREATE: 'Compose v1 on Docker 25+: containers are removed before the new release starts',
  BLUE_GREEN_IN_PLACE: 'blue/green: a front or shared service changed and is updated in place, not tested before the switch',
  LOW_ROOM: 'little space or few inodes left on the host for the next install',
  IMAGE_SKIPPED: 'an image was left out of the host inventory',
  STATE_UNREADABLE: 'a stack\'s releases were left out of the host inventory (state unreadable)',
  HOST_KEY_ADDED: 'a new SSH host key was added to known_hosts (--accept-new-host-key)',
  SWARM_NODE_AVOIDED: 'a swarm node could not be loaded; the stack is kept off it (--allow-partial-nodes)',
  NO_MEMORY_LIMIT: 'a service has no memory limit: a runaway container can take the host down',
  SETUID_FILES: 'a shipped layer holds setuid or setgid files (path, mode and image named)',
  ALLOW_UNSIGNED_IGNORED: 'host setup was given --allow-unsigned: it never accepts an unsigned bundle',
  ENGINE_RETRY: 'the engine did not answer (refused, reset, no socket): a call that changes nothing is tried again after a pause',
  SSH_RETRY: 'an SSH host refused, reset or timed out the connection: connecting is tried again after a pause',
  SHA256SUMS_MISSING: 'the bundle has no SHA256SUMS (made by an older ferry): it cannot be checked with stock tools alone',
  CONFIG_UNREADABLE: 'inspect --layers: an image config in the bundle cannot be read; its layers show no build instructions',
  CACHE_UNUSABLE: 'the layer cache cannot be made or written: create goes on without it',
  CACHE_ENTRY_CORRUPT: 'a layer cache entry does not match its digest: dropped, the layer compressed again',
  LAYER_GUESS_WRONG: 'a layer create took for a known one hashed to another: read again from a second save',
  DELTA_UNVERIFIED: 'a layer delta did not rebuild its layer on the build server: the layer is shipped whole',
} as const satisfies Record<string, string>;
export type WarningCode = keyof typeof WARNING_CODES;

export interface ErrorOptions {
  /** Machine-readable details for --json (file names, digests, lists of problems). */
  details?: unknown;
  /**
   * What the user can do about it: one next step, or several in the order to take them (ui prints
   * each on its own line under the message; --json gives them as `nextSteps`).
   */
  hint?: string | readonly string[];
  cause?: unknown;
}

export abstract class FerryError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  /** Stable identifier for scripts, e.g. "TRUST_UNTRUSTED_KEY". */
  readonly code: string;
  readonly details?: unknown;
  /** The next steps, in order; empty when there is nothing to suggest. */
  readonly nextSteps: readonly string[];

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
    this.nextSteps = options.hint === undefined ? [] : typeof options.hint === 'string' ? [options.hint] : [...options.hint];
  }

  /** The next steps as one text, a line each (what fleet and status results carry per host). */
  get hint(): string | undefined {
    return this.nextSteps.length > 0 ? this.nextSteps.join('\n') : undefined;
  }
}

export class UsageError extends FerryError {
  readonly exitCode = ExitCode.usage;
}
export class TrustError extends FerryError {
  readonly exitCode = ExitCode.trust;
}
export class IntegrityError extends FerryError {
  readonly exitCode = ExitCode.integrity;
}
export class PolicyError extends FerryError {
  readonly exitCode = ExitCode.policy;
}
export class HostPreconditionError extends FerryError {
  readonly exitCode = ExitCode.hostPrecondition;
}
export class DeployRestoredError extends FerryError {
  readonly exitCode = ExitCode.deployRestored;
}
export class DeployFailedError extends FerryError {
  readonly exitCode = ExitCode.deployFailed;
}
export class BuildInputError extends FerryError {
  readonly exitCode = ExitCode.buildInput;
}
export class BugError extends FerryError {
  readonly exitCode = ExitCode.bug;
}

/**
 * What FleetFailedError needs of a fleet install's result (services/fleet.ts `FleetResult` fits;
 * errors.ts imports nothing of src, so it names the shape rather than the service's type).
 */
export interface FleetOutcome {
  /** The exit code of the first failed host in argument order. */
  exitCode: number;
  hosts: ReadonlyArray<{
    target: string;
    ok: boolean;
    outcome: string;
    exitCode: number | null;
    error?: { code: string };
  }>;
}

/** Raised after the summary is shown when any host failed; its details are the whole result. */
export class FleetFailedError<R extends FleetOutcome = FleetOutcome> extends FerryError {
  readonly exitCode: ExitCodeValue;

  constructor(
    readonly result: R,
    hint = 'The hosts that succeeded keep their new release. Fix the failed ones and run the same command again: hosts already current are a no-op.',
  ) {
    const bad = result.hosts.filter((h) => !h.ok && h.exitCode !== null);
    const skipped = result.hosts.filter((h) => h.outcome === 'skipped').length;
    super(
      'FLEET_FAILED',
      `${bad.length} of ${result.hosts.length} hosts failed: ${bad.map((h) => `${h.target} (${h.error?.code ?? '?'}, exit ${h.exitCode})`).join(', ')}${skipped ? `; ${skipped} not started (--fail-fast)` : ''}`,
      {
        details: result,
        hint,
      },
    );
    this.exitCode = result.exitCode as ExitCodeValue;
  }
}

/** One problem found while checking something; verify collects all of them before failing. */
export interface Problem {
  /** The bundle-relative file (or other thing) the problem is about. */
  file: string;
  kind: 'missing' | 'extra' | 'size' | 'digest' | 'not-regular' | 'unreadable' | 'malformed';
  message: string;
}
