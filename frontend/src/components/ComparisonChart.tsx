/** Time to first audio of streaming vs regular synthesis, as numbers and as bars. */
import { formatSeconds, speedup } from '../lib/format';

export interface ComparisonRow {
  key: string;
  label: string;
  /** Seconds until audio could start playing in this browser; null while unknown. */
  firstAudio: number | null;
  /** Seconds until the whole audio had arrived. */
  complete: number | null;
  detail?: string;
}

export function ComparisonChart({ rows }: { rows: readonly ComparisonRow[] }) {
  const scale = Math.max(...rows.map((r) => r.firstAudio ?? 0), 0.001);
  const streaming = rows.find((r) => r.key === 'streaming')?.firstAudio ?? undefined;
  const regular = rows.find((r) => r.key === 'regular')?.firstAudio ?? undefined;
  const ratio = speedup(regular, streaming);
  return (
    <figure className="chart" data-testid="comparison-chart">
      <figcaption>Time to first audio (shorter is better)</figcaption>
      {rows.map((row) => (
        <div className="bar-row" key={row.key} data-testid={`bar-${row.key}`}>
          <span className="bar-label">{row.label}</span>
          <div className="bar-track" aria-hidden="true">
            <div
              className={`bar bar-${row.key}`}
              style={{
                width: row.firstAudio === null ? '0%' : `${(row.firstAudio / scale) * 100}%`,
              }}
            />
          </div>
          <span className="bar-value" data-testid={`ttfa-${row.key}`}>
            {row.firstAudio === null ? '…' : formatSeconds(row.firstAudio)}
          </span>
          <span className="bar-detail">
            {row.complete === null ? '' : `all audio after ${formatSeconds(row.complete)}`}
            {row.detail ? ` · ${row.detail}` : ''}
          </span>
        </div>
      ))}
      {ratio && <p className="chart-summary">Streaming started playing {ratio} sooner.</p>}
    </figure>
  );
}
