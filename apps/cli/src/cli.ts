/** Entry point of the `ultrasketch` binary (built to dist/cli.js with a shebang). */
import { main } from './main.js';

// `ultrasketch generate ... | head` closes stdout early: stop quietly instead of crashing on EPIPE.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env);
process.exitCode = code;
