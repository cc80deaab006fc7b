/** Numbers as the UI shows them. */

export function formatSeconds(seconds: number | undefined | null, digits = 2): string {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds)) return '–';
  return `${seconds.toFixed(digits)} s`;
}

export function formatRtf(rtf: number | undefined | null): string {
  if (rtf === undefined || rtf === null || !Number.isFinite(rtf)) return '–';
  return rtf.toFixed(2);
}

/** "3.2× sooner" style ratio, or null when it says nothing useful. */
export function speedup(slow: number | undefined, fast: number | undefined): string | null {
  if (!slow || !fast || !(fast > 0) || !(slow > 0)) return null;
  const ratio = slow / fast;
  return ratio >= 1.05 ? `${ratio.toFixed(1)}×` : null;
}
