//! `cloudfn-bench compare`: the cloudfn rows of the `http` table for two builds of cloudfn in
//! one sitting, so a change to the call path shows its cost beside its base on the same
//! machine, under the same load, at the same moment.
//!
//! The builds take turns (base, head, then head, base, …) so drift in the machine (other load,
//! thermal state, page cache) falls on both alike; each row's figures are the median of a
//! build's runs, and the spread of those runs is printed beside them as the noise to read the
//! ratios against. Both builds serve worlds built with the same guests (this binary's).

use super::{ADMIN, CONTAINER, CROSS, Plan, SAME, cloudfn_load};
use cloudfn_bench::*;
use std::path::Path;

/// The rows compared: those one `cloudfn serve` answers with its defaults.
const ROWS: [&str; 4] = [SAME, CROSS, ADMIN, CONTAINER];

/// Measures `plan`'s rows for `base` and `head`, `rounds` times each, and prints the table.
pub async fn run(plan: &Plan, base: &Path, head: &Path, rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        base.exists(),
        "{} is missing: scripts/bench.sh compare REF builds it",
        base.display()
    );
    let rows: Vec<&str> = ROWS.into_iter().filter(|r| plan.wants(r)).collect();
    anyhow::ensure!(!rows.is_empty(), "no cloudfn row matches --only");
    let builds = [("base", base), ("head", head)];
    let worlds = [World::build(base)?, World::build(head)?];
    // runs[build][row]: that build's figures of that row, one a round.
    let mut runs = vec![vec![Vec::<Figures>::new(); rows.len()]; 2];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for b in order {
            let (name, _) = builds[b];
            let served = worlds[b].serve(&[])?;
            for (i, row) in rows.iter().enumerate() {
                let load = cloudfn_load(row, &worlds[b], &served).await?;
                let label = format!("{name}: {row} (round {})", round + 1);
                runs[b][i].push(plan.measure(&label, &served.server, &load).await?);
            }
        }
    }
    print(plan, &builds, &rows, &runs, rounds);
    Ok(())
}

fn print(
    plan: &Plan,
    builds: &[(&str, &Path); 2],
    rows: &[&str],
    runs: &[Vec<Vec<Figures>>],
    rounds: usize,
) {
    println!(
        "\nbase {} · head {}\n{} connections, {rounds} × {} s runs per build and row after a 2 s \
         warm-up each, the builds alternating; median, and in brackets the spread of the runs \
         (max ÷ min) as the noise to read a ratio against\n",
        builds[0].1.display(),
        builds[1].1.display(),
        plan.connections,
        plan.duration,
    );
    println!(
        "| row | req/s base | req/s head | head ÷ base | CPU µs/req base | CPU µs/req head | head ÷ base | p99 base | p99 head | head ÷ base | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cpu = |f: &Figures| f.cpu_per_request.as_secs_f64() * 1e6;
    let rps = |f: &Figures| f.rps;
    let p99 = |f: &Figures| f.p99.as_secs_f64() * 1e3;
    for (i, row) in rows.iter().enumerate() {
        let (b, h) = (&runs[0][i], &runs[1][i]);
        let (mb, mh) = (median(b), median(h));
        let cell = |f: fn(&Figures) -> f64, v: &[Figures], m: &Figures, unit: &str| {
            format!("{:.1}{unit} [{:.2}]", f(m), spread(v, f))
        };
        println!(
            "| {row} | {} | {} | {:.2}× | {} | {} | {:.2}× | {} | {} | {:.2}× | {} |",
            cell(rps, b, &mb, ""),
            cell(rps, h, &mh, ""),
            rps(&mh) / rps(&mb),
            cell(cpu, b, &mb, ""),
            cell(cpu, h, &mh, ""),
            cpu(&mh) / cpu(&mb),
            cell(p99, b, &mb, " ms"),
            cell(p99, h, &mh, " ms"),
            p99(&mh) / p99(&mb),
            mb.errors + mh.errors,
        );
    }
}

/// The largest of `runs`' figure over the smallest: 1.00 when the runs agree.
fn spread(runs: &[Figures], figure: fn(&Figures) -> f64) -> f64 {
    let values = runs.iter().map(figure);
    let max = values.clone().fold(f64::MIN, f64::max);
    let min = values.fold(f64::MAX, f64::min);
    if min > 0.0 { max / min } else { f64::NAN }
}
