/** How the CLI entry points talk to the outside: the lead's `lastgasp` command passes process streams. */
export interface Io {
  stdout(line: string): void;
  stderr(line: string): void;
  stdin?: NodeJS.ReadableStream;
}

/** Exit codes shared by the bridge's commands. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
/** EX_USAGE (sysexits.h), as every lastgasp command exits on a usage error. */
export const EXIT_USAGE = 64;
