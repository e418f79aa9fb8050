"""How results read on a terminal: the run's headline rows (also the HTML report's), numbers,
and the tables run, sweep and plan print."""

from __future__ import annotations

from rich.table import Table


def describe(spec: sc.Scenario) -> str:
    return spec.strategy.describe()


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def ms(v) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def report_rows(rep: dict) -> list[tuple[str, str, str]]:
    """The headline figures of a report (what, simulated, closed form where it has one): the table
    `run` prints, and the one of its HTML report."""
    est = rep["estimate"]
    rows = [("throughput (tokens/s)", fmt(rep["throughput_tokens_per_s"]), fmt(est["throughput_tokens_per_s"])),
            ("tokens per step", fmt(rep["tokens_per_step"]), fmt(est["tokens_per_step"])),
            ("draft acceptance rate", fmt(rep["acceptance_rate"]), "")]
    for key in ("ttft", "tpot", "e2e"):
        s = rep["latency_s"][key]
        rows.append((f"{key.upper()} mean / p50 / p99 (ms)", f"{ms(s['mean'])} / {ms(s['p50'])} / {ms(s['p99'])}",
                     ms(est["latency_s"][key])))
    for name, d in rep["devices"].items():
        rows.append((f"device {name} utilization", fmt(d["utilization"]), fmt(est["utilization"].get(name))))
    for name, link in rep["links"].items():
        rows.append((f"link {name} utilization / MB", f"{fmt(link['utilization'])} / {link['bytes'] / 1e6:.3f}", ""))
    if "batching" in rep:
        b = rep["batching"]
        rows.append(("batch mean / drafted per request-step", f"{fmt(b['decode_batch_mean'])} / "
                     f"{fmt(b['drafted_per_request_step'])}", fmt(est.get("batch"))))
        rows.append(("KV peak fraction / preemptions", f"{fmt(b['kv_peak_fraction'])} / {b['preemptions']}", ""))
    if "energy" in rep:
        e = rep["energy"]
        rows.append(("energy J / per token / per request", f"{fmt(e['joules'])} / {fmt(e['joules_per_token'])} / "
                     f"{fmt(e['joules_per_request'])}", ""))
    if "slo" in rep:
        s = rep["slo"]
        rows.append(("SLO attained / goodput (tokens/s)", f"{fmt(s['attained'])} / "
                     f"{fmt(s['goodput_tokens_per_s'])}", ""))
    rows.append(("requests / simulated s", f"{rep['requests']} / {fmt(rep['simulated_s'])}", ""))
    return rows


def print_report(rep: dict, spec, out_console) -> None:
    table = Table(title=f"{rep['scenario']}: {describe(spec)}")
    table.add_column("")
    table.add_column("simulated", justify="right")
    table.add_column("closed form", justify="right")
    for row in report_rows(rep):
        table.add_row(*row)
    out_console.print(table)
    events = rep["sim"]["events"]
    out_console.print(f"simulated {rep['output_tokens']} tokens in {rep['sim']['wall_s']:.2f} s wall"
                      + (f", {events} events" if events is not None else ""))
    for w in rep["warnings"]:
        out_console.print(f"warning: {w}", markup=False)


def mean_ci(row: dict, metric: str, scale: float) -> str:
    mean, ci = row.get(f"{metric}.mean"), row.get(f"{metric}.ci95")
    if mean is None:
        return "-"
    if ci is not None and ci <= 1e-9 * abs(mean):
        ci = 0.0  # rounding noise of identical repeats
    return f"{mean * scale:.4g}" + (f" ± {ci * scale:.2g}" if ci is not None else "")


def print_plan(job, ranked: list[dict], out_console) -> None:
    slo = job.slo
    targets = ", ".join(f"{k.upper()} <= {v:g} ms" for k, v in (("ttft", slo.ttft_ms), ("tpot", slo.tpot_ms))
                        if v is not None)
    table = Table(title=f"{job.source}: highest Poisson rate with p{slo.percentile:g} {targets}")
    keys = [a.key for a in job.axes]
    for col in keys:
        table.add_column(col, overflow="fold")
    energy = any(r.get("tokens_per_joule") is not None for r in ranked)
    for col in ("requests/s", "tokens/s", f"p{slo.percentile:g} TTFT / TPOT / E2E (ms)", "USD/h", "tokens/USD",
                *(("tokens/J",) if energy else ()),
                "rank: rate / tokens per USD / " + ("tokens per J / " if energy else "") + "latency"):
        table.add_column(col, justify="right", overflow="fold")
    for row in sorted(ranked, key=lambda r: r["rank_rate"]):
        per_usd = row["tokens_per_usd"]
        table.add_row(*(str(row[k]) for k in keys),
                      fmt(row["sustained_rate_per_s"]) if row["feasible"] else "0 (infeasible)",
                      fmt(row["throughput_tokens_per_s"]),
                      " / ".join(ms(row[f"{k}_at_percentile_s"]) for k in ("ttft", "tpot", "e2e")),
                      fmt(row["usd_per_hour"]), "-" if per_usd is None else f"{per_usd:,.0f}",
                      *((fmt(row["tokens_per_joule"]),) if energy else ()),
                      " / ".join(fmt(row[k]) for k in ("rank_rate", "rank_tokens_per_usd",
                                                      *(("rank_tokens_per_joule",) if energy else ()),
                                                      "rank_latency")))
    out_console.print(table)


def print_sweep(title: str, keys: list[str], summ: list[dict], out_console) -> None:
    table = Table(title=title)
    for col in keys + ["tokens/s", "TTFT p99 (ms)", "TPOT p99 (ms)"]:
        table.add_column(col, justify="left" if col in keys else "right")
    for row in summ:
        table.add_row(*(str(row[k]) for k in keys), mean_ci(row, "throughput_tokens_per_s", 1),
                      mean_ci(row, "latency_s.ttft.p99", 1000), mean_ci(row, "latency_s.tpot.p99", 1000))
    out_console.print(table)
