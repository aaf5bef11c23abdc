/**
 * A progress display for long runs, on stderr only (stdout carries results and must stay clean for pipes and
 * `--json`).
 *
 * - On a terminal: one line redrawn in place with a carriage return — bar, done/total, rate, ETA, elapsed —
 *   at most every `ttyIntervalMs`, starting once the run has lasted `ttyDelayMs`.
 * - Not on a terminal (a log file, CI): a plain line at most every `plainIntervalMs`, and only once the run has
 *   lasted longer than `plainDelayMs` — a short run prints nothing.
 *
 * The caller drives it with `update(done)` from its own loop (the work is synchronous compute between
 * awaits, so a timer would not fire); the clock is read on every update and drawing is throttled by it.
 */

export interface ProgressStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Short name shown first ("eval", "generate"). */
  label: string;
  /** Total units of work. */
  total: number;
  /** Name of a unit, for done/total and the rate ("tok"). */
  unit: string;
  /** Where to draw; default process.stderr. */
  stream?: ProgressStream;
  /** Draw nothing at all. */
  quiet?: boolean;
  /** Override terminal detection (tests). */
  tty?: boolean;
  /** Milliseconds clock (tests). Default performance.now. */
  now?: () => number;
  ttyDelayMs?: number;
  ttyIntervalMs?: number;
  plainDelayMs?: number;
  plainIntervalMs?: number;
  /**
   * Measure the rate, ETA and elapsed time from the first update instead of from construction: for work that
   * starts after a setup of its own (a finetune after encoding and the bit plan) or resumes midway (a finetune
   * from a checkpoint at step 6,000 of 20,000), whose units done before that first update took no time here.
   */
  fromFirstUpdate?: boolean;
}

export class Progress {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private start: number;
  /** Units already done when the clock started (the first update's, with fromFirstUpdate). */
  private base = 0;
  private started: boolean;
  private readonly delay: number;
  private readonly interval: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private drawnDone = -1;
  private finished = false;
  private done = 0;
  private detail = '';

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.now = options.now ?? (() => performance.now());
    this.start = this.now();
    this.started = options.fromFirstUpdate !== true;
    this.delay = this.tty ? (options.ttyDelayMs ?? 300) : (options.plainDelayMs ?? 2000);
    this.interval = this.tty ? (options.ttyIntervalMs ?? 100) : (options.plainIntervalMs ?? 2000);
  }

  /** Record progress (`done` units so far, an optional short detail like "window 3/16"); redraws if due. */
  update(done: number, detail?: string): void {
    if (this.finished) return;
    this.done = done;
    if (detail !== undefined) this.detail = detail;
    if (this.options.quiet) return;
    const t = this.now();
    if (!this.started) {
      this.started = true;
      this.start = t;
      this.base = done;
      return;
    }
    if (t - this.start < this.delay || t - this.lastDraw < this.interval) return;
    this.draw(t);
  }

  /** End the display: on a terminal, the final state stays on its own line; in a log, a last line if any was printed. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.options.quiet || !this.drawn) return;
    if (this.tty || this.drawnDone !== this.done) this.draw(this.now());
    if (this.tty) this.stream.write('\n');
  }

  /** Remove the line from a terminal (before printing an error, say). */
  clear(): void {
    if (this.tty && this.drawn && !this.finished) this.stream.write('\r\x1b[K');
    this.finished = true;
  }

  /** The text of the current state (exported for tests). */
  line(t = this.now()): string {
    const { total, unit, label } = this.options;
    const elapsed = Math.max(0, (t - this.start) / 1000);
    const rate = elapsed > 0 ? (this.done - this.base) / elapsed : 0;
    const eta = rate > 0 ? Math.max(0, total - this.done) / rate : Infinity;
    const counts = `${formatCount(this.done)}/${formatCount(total)} ${unit}`;
    // Slow units (a training step can take seconds) read better as seconds per unit than as "0 steps/s".
    const rateText = rate > 0 && rate < 1 ? `${(1 / rate).toFixed(1)} s/${unit.replace(/s$/, '')}` : `${formatCount(Math.round(rate))} ${unit}/s`;
    const detail = this.detail ? ` ${this.detail}` : '';
    if (!this.tty) {
      return `${label}:${detail ? `${detail},` : ''} ${counts}, ${rateText}, ETA ${formatDuration(eta)}, elapsed ${formatDuration(elapsed)}`;
    }
    const fraction = total > 0 ? Math.min(1, this.done / total) : 0;
    const tail = `${detail} ${counts} · ${rateText} · ETA ${formatDuration(eta)} · ${formatDuration(elapsed)} elapsed`;
    const columns = this.stream.columns ?? 80;
    const width = Math.max(10, Math.min(30, columns - label.length - tail.length - 10));
    const full = Math.round(fraction * width);
    const bar = '█'.repeat(full) + '░'.repeat(width - full);
    return `${label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}%${tail}`;
  }

  private draw(t: number): void {
    this.lastDraw = t;
    this.drawn = true;
    this.drawnDone = this.done;
    if (this.tty) this.stream.write(`\r${this.line(t)}\x1b[K`);
    else this.stream.write(`${this.line(t)}\n`);
  }
}

/** 1234567 → "1,234,567". */
export function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '?';
}

/** Seconds → "0:07", "12:34", "1:02:03"; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
