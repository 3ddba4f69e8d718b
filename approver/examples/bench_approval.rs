//! Runs the approval latency benchmark: `cargo run -p dbward-approver --release
//! --example bench_approval [PENDING]` (default 1,000 pending requests).

use std::time::Duration;

use dbward_approver::bench::{BenchOptions, approval_latency};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pending = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1000);
    let report = approval_latency(
        BenchOptions {
            pending,
            storage_url: None,
        },
        |_| async {},
    )
    .await?;
    let goal = Duration::from_millis(100);
    println!("{report}");
    println!(
        "goal p99 < {goal:?}: {}",
        if report.meets(goal) { "met" } else { "NOT met" }
    );
    Ok(())
}
