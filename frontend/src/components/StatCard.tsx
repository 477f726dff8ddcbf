//! One number with its label, for the overview and usage totals.

export function StatCard({ label, value, hint }: { label: string; value: string; hint?: string }) {
  return (
    <div className="stat" role="group" aria-label={label}>
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
      {hint ? <div className="stat-hint muted">{hint}</div> : null}
    </div>
  );
}
