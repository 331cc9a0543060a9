/** The command line shared by the examples: --quick, --retrain, --data DIR; out/ and checkpoints/; errors in one line. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Makes an uncaught error print one line (its name and message, no stack) and exit with code 1:
 * what a user of an example needs to read is the message, which says what to do.
 * Set INFOGEO_DEBUG=1 for the stack.
 */
export function exitOnError(): void {
  const fail = (e: unknown) => {
    if (process.env['INFOGEO_DEBUG']) console.error(e);
    else console.error(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    process.exit(1);
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
}

export function exampleArgs(moduleUrl: string, checkpoint: string) {
  exitOnError();
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const here = dirname(fileURLToPath(moduleUrl));
  return {
    quick,
    retrain: args.includes('--retrain'),
    dataDir: args.includes('--data') ? args[args.indexOf('--data') + 1] : undefined,
    out: join(here, 'out'),
    checkpoint: join(here, 'checkpoints', quick ? `${checkpoint}_quick` : checkpoint),
  };
}
