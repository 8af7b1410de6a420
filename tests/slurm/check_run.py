"""Check that a Snakemake run really went through Slurm, for tests/slurm/run_cluster_test.sh.

Evidence from three independent sides, so that no single log can fool the test:
* Snakemake's log: every job that finished (local rules aside) was submitted with a Slurm job id,
  directly or inside a group job;
* slurmctld's log: each of those Slurm jobs was accepted and ended with exit status 0, and
  `scontrol` still knows its partition and whether a GPU was allocated to it;
* the jobs themselves (the stand-in workflow writes `*.job.json` records): the Slurm job id they
  ran under, the GPU Slurm exposed to them, and the device torch chose.
Results are compared with those of a local run of the same workflow and seeds.
Exit status 1 and one line per failed check otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GROUP_HEADER = re.compile(r"Group job (\S+) \(jobs")
RULE_HEADER = re.compile(r"^\s*(local)?rule (\w+):")
JOBID_LINE = re.compile(r"^\s*jobid: (\d+)")
SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+)")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


@dataclass
class SnakemakeRun:
    """What one Snakemake log says about its jobs (ids are Snakemake's own job ids)."""

    rule_of: dict[str, str] = field(default_factory=dict)
    local_rules: set[str] = field(default_factory=set)
    slurm_id_of: dict[str, str] = field(default_factory=dict)
    submitted_at: dict[str, int] = field(default_factory=dict)  # line number of the submission
    finished_at: dict[str, int] = field(default_factory=dict)


def parse_snakemake_log(text: str) -> SnakemakeRun:
    """Map each job to its rule and Slurm job id; jobs of a group share the group's Slurm id."""
    run = SnakemakeRun()
    pending_group: list[str] = []  # jobs listed under a group header, not yet submitted
    in_group = False
    rule = None
    for number, line in enumerate(text.splitlines()):
        if GROUP_HEADER.search(line):
            in_group, pending_group = True, []
        elif m := RULE_HEADER.match(line):
            local, rule = m.group(1), m.group(2)
            if local:
                run.local_rules.add(rule)
        elif (m := JOBID_LINE.match(line)) and rule is not None:
            run.rule_of[m.group(1)] = rule
            if in_group:
                pending_group.append(m.group(1))
            rule = None
        elif m := SUBMITTED.match(line):
            job, slurm_id = m.groups()
            # A plain job listed after a group header (Snakemake prints the whole batch before
            # submitting) is submitted on its own; the group keeps its other members.
            is_group = not job.isdigit()
            members = pending_group if is_group else [job]
            for member in members:
                run.slurm_id_of[member] = slurm_id
                run.submitted_at[member] = number
            if is_group:
                in_group, pending_group = False, []
            elif job in pending_group:
                pending_group.remove(job)
        elif m := FINISHED.match(line):
            run.finished_at[m.group(1)] = number
            run.rule_of.setdefault(m.group(1), m.group(2))
    return run


def check_every_job_submitted(run: SnakemakeRun) -> list[str]:
    problems = []
    remote = [j for j in run.finished_at if run.rule_of[j] not in run.local_rules]
    if not remote:
        problems.append("the Snakemake log shows no finished job outside local rules")
    for job in remote:
        if job not in run.slurm_id_of:
            problems.append(f"job {job} ({run.rule_of[job]}) finished without a Slurm submission")
    return problems


def check_jobs_not_serialized(run: SnakemakeRun, rule: str) -> list[str]:
    """Jobs of `rule` that were ready together must be queued together, not one after another.

    A global `resources: gpu=1` (a workstation setting) would make Snakemake hold each GPU job
    back until the previous one ends, wasting a cluster's GPUs.
    """
    jobs = [j for j, r in run.rule_of.items() if r == rule and j in run.submitted_at]
    if len(jobs) < 2:
        return [f"expected at least two '{rule}' jobs to check that they run side by side"]
    last_submission = max(run.submitted_at[j] for j in jobs)
    first_finish = min(run.finished_at.get(j, sys.maxsize) for j in jobs)
    if last_submission > first_finish:
        return [
            f"'{rule}' jobs were submitted one after another (is a global `resources: gpu=1` "
            "from a workflow profile, e.g. profiles/default, limiting the cluster run?)"
        ]
    return []


def check_ctld_log(ctld_log: str, slurm_ids: set[str]) -> list[str]:
    problems = []
    for slurm_id in sorted(slurm_ids, key=int):
        if f"_slurm_rpc_submit_batch_job: JobId={slurm_id} " not in ctld_log:
            problems.append(f"slurmctld never accepted Slurm job {slurm_id}")
        elif f"_job_complete: JobId={slurm_id} WEXITSTATUS 0" not in ctld_log:
            problems.append(
                f"Slurm job {slurm_id} did not end with exit status 0 in slurmctld's log"
            )
    return problems


def scontrol_job(slurm_id: str) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (finished jobs stay visible for MinJobAge).

    `JOB_GRES` is what Slurm allocated (`gpu:1`), not just what was asked for.
    """
    out = subprocess.run(
        ["scontrol", "--details", "--oneliner", "show", "job", slurm_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(token.split("=", 1) for token in out.split() if "=" in token)


def check_gpu_allocation(
    run: SnakemakeRun, rule: str, gpus: int, partition: str | None
) -> list[str]:
    """Slurm's own account of the jobs of `rule`: partition and GPUs allocated."""
    problems = []
    for job, r in run.rule_of.items():
        if r != rule or job not in run.slurm_id_of:
            continue
        slurm_id = run.slurm_id_of[job]
        info = scontrol_job(slurm_id)
        allocated = info.get("JOB_GRES", "(null)")
        if allocated != (f"gpu:{gpus}" if gpus else "(null)"):
            problems.append(
                f"Slurm job {slurm_id} ({rule}) was allocated GRES {allocated}, "
                f"expected {gpus} GPU(s)"
            )
        if partition and info.get("Partition") != partition:
            problems.append(
                f"Slurm job {slurm_id} ({rule}) ran in partition {info.get('Partition')}, "
                f"expected {partition}"
            )
    return problems


def check_job_records(results: Path, slurm_ids: set[str], gpus: int) -> list[str]:
    """The stand-in's records: each ran under a submitted Slurm id; GPU jobs fell back to CPU."""
    problems = []
    records = {p: json.loads(p.read_text()) for p in sorted(results.rglob("*.job.json"))}
    if not records:
        return [f"no job records (*.job.json) under {results}"]
    for path, record in records.items():
        if record["SLURM_JOB_ID"] not in slurm_ids:
            problems.append(
                f"{path}: ran under Slurm job {record['SLURM_JOB_ID']!r}, not submitted"
            )
    shard_jobs = {r["SLURM_JOB_ID"] for p, r in records.items() if p.name.startswith("shard-")}
    shards = sum(p.name.startswith("shard-") for p in records)
    if shards > 1 and len(shard_jobs) >= shards:
        problems.append(f"{shards} feature shards ran as {len(shard_jobs)} Slurm jobs: not grouped")
    for path, record in records.items():
        if "gpu_requested" not in record:
            continue
        visible = record["CUDA_VISIBLE_DEVICES"]
        if record["gpu_requested"] != gpus or (visible is not None) != (gpus > 0):
            problems.append(
                f"{path}: gpu_requested={record['gpu_requested']}, "
                f"CUDA_VISIBLE_DEVICES={visible!r}; expected {gpus} GPU(s)"
            )
        if record["cuda_available"] or record["device"] != "cpu":
            problems.append(f"{path}: expected the CPU fallback, got device {record['device']}")
    return problems


def check_same_results(results: Path, reference: Path, pattern: str) -> list[str]:
    """Files matching `pattern` hold equal JSON in both runs (the same seeds, the same numbers)."""
    ours = sorted(p.relative_to(results) for p in results.glob(pattern))
    theirs = sorted(p.relative_to(reference) for p in reference.glob(pattern))
    if not ours:
        return [f"no results matching {pattern} under {results}"]
    if ours != theirs:
        return [f"result files differ: {[str(p) for p in ours]} vs {[str(p) for p in theirs]}"]
    return [
        f"{rel}: {json.loads((results / rel).read_text())} != local "
        f"{json.loads((reference / rel).read_text())}"
        for rel in ours
        if json.loads((results / rel).read_text()) != json.loads((reference / rel).read_text())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", type=Path, required=True, help="Snakemake's output")
    parser.add_argument("--ctld-log", type=Path, required=True, help="slurmctld's log file")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="results of a local run to compare with")
    parser.add_argument("--compare", default="runs/*/metrics.json", help="glob under results")
    parser.add_argument("--gpu-rule", default="train", help="the rule that asks for a GPU")
    parser.add_argument("--gpus", type=int, required=True, help="GPUs each GPU job should get")
    parser.add_argument("--gpu-partition", help="partition the GPU jobs should run in")
    parser.add_argument("--records", action="store_true", help="check the stand-in's records")
    parser.add_argument(
        "--side-by-side", action="store_true", help="GPU jobs must be queued together"
    )
    args = parser.parse_args(argv)

    run = parse_snakemake_log(args.log.read_text())
    slurm_ids = set(run.slurm_id_of.values())
    problems = check_every_job_submitted(run)
    problems += check_ctld_log(args.ctld_log.read_text(), slurm_ids)
    problems += check_gpu_allocation(run, args.gpu_rule, args.gpus, args.gpu_partition)
    if args.side_by_side:
        problems += check_jobs_not_serialized(run, args.gpu_rule)
    if args.records:
        problems += check_job_records(args.results, slurm_ids, args.gpus)
    if args.reference:
        problems += check_same_results(args.results, args.reference, args.compare)
    for problem in problems:
        print(f"check_run: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"check_run: {len(run.slurm_id_of)} jobs went through {len(slurm_ids)} Slurm jobs "
            f"({', '.join(sorted(slurm_ids, key=int))}); all checks passed"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
