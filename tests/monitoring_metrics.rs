//! The gateway's metrics page as Prometheus tooling sees it, after traffic that moves every
//! metric: `promtool check metrics` is clean, and every metric a Grafana dashboard panel reads
//! is exported (`make deploy-check-monitoring` runs this beside its static checks).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::monitoring::{
    dashboard_queries, exercise_every_metric, exported, families, metric_names, monitored_config,
};
use common::tools::require_tool;
use common::*;

#[actix_rt::test]
async fn promtool_finds_nothing_and_dashboards_read_only_exported_metrics() {
    let promtool = require_tool("promtool");
    let upstream = mock("a");
    let gateway = start_gateway(
        monitored_config().await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    exercise_every_metric(&gateway, &upstream).await;
    let page = gateway.metrics_text().await;

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("page to promtool");
    let output = check.wait_with_output().expect("promtool finishes");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics:\n{findings}"
    );

    let families = families(&page);
    let mut missing = Vec::new();
    for (dashboard, panel, expr) in dashboard_queries() {
        for name in metric_names(&expr, &["gateway_", "process_"]) {
            if !exported(&families, &name) {
                missing.push(format!("{dashboard} / {panel}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard panels read metrics the gateway does not export:\n{}",
        missing.join("\n")
    );
    gateway.stop().await;
}
