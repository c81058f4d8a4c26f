// docker-modem's SSH agent (lib/ssh.js) has no typings of its own: the part engine.ts uses.
declare module 'docker-modem/lib/ssh.js' {
  import type { Agent } from 'node:http';
  import type { Duplex } from 'node:stream';
  const sshAgent: (options: { host: string; port: number; username: string; agent?: string }) => Agent & {
    createConnection(options: unknown, callback: (e: Error | null, socket?: Duplex) => void): void;
  };
  export default sshAgent;
}
