//! Times the reward estimate of a synthetic paper-sized step and prints the report as JSON.
//! `cargo run --release -p coaug-rl --example reward_bench [T]`

fn main() -> anyhow::Result<()> {
    let mut shape = coaug_rl::RewardBenchShape::paper();
    if let Some(t) = std::env::args().nth(1) {
        shape.settings.joint_samples = t.parse()?;
    }
    let report = coaug_rl::reward_benchmark(&shape)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
