// The client's terminal, when it asked for one (`ssh -t`): what a one-off process needs to run
// with a terminal of the same type and size.
export interface Terminal {
  term: string;
  rows: number;
  cols: number;
  /** Called with the new size when the client's window changes. */
  onResize(listener: (rows: number, cols: number) => void): void;
}
