"""Tokens, tokens/param and compute per model preset in a time budget.

    python -m llm_sweep.plan --budget 3h --seq-len 512                     # MFU 0.36 on an A100
    python -m llm_sweep.plan --budget 3h --tokens-per-s 100000             # one rate for all
    python -m llm_sweep.plan --budget 3h --mfu 0.40 --peak-flops 989e12    # an H100
    python -m llm_sweep.plan --budget 3h --bench bench.json                # a measured MFU
    python -m llm_sweep.plan --budget 10m --probe --presets tiny --device cpu
    python -m llm_sweep.plan --fit fit.json --flops 1.1e18                 # from a scaling-law fit
    python -m llm_sweep.plan --fit fit.json --budget 3h --mfu 0.36         # its compute: MFU x peak x time

--bench takes the mode with the most tokens/s and the peak it implies
(tokens/s x FLOPs per token / MFU); each preset then gets that MFU on that peak.
Marks the presets nearest 20 tokens/param (Chinchilla) and the seed run's 6.

--fit (a fit.json of `python -m llm_sweep.report --fit`) answers "for my compute, which
shape and how many tokens?": the compute-optimal N and D, a shape near N with its expected
loss, and the presets against it. The compute is --flops, or the time budget at the
throughput's FLOP/s.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from llm_sweep.bench.results import read_bench
from llm_sweep.core import console
from llm_sweep.core.budget import parse_duration
from llm_sweep.core.console import user_errors
from llm_sweep.core.data_config import TOKENIZER_VOCAB_SIZES, TOKENIZERS
from llm_sweep.core.errors import DataError
from llm_sweep.core.model_config import ModelConfig, with_vocab_size
from llm_sweep.hardware import resolve_device
from llm_sweep.plan.presets import (DEFAULT_MFU, DEFAULT_PEAK_FLOPS, PresetCost, format_plan,
                                    load_presets, mfu_throughput, plan_rows, preset_cost)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="3h", help="training time: 3h, 90m, 45s or seconds (default 3h)")
    parser.add_argument("--seq-len", type=int, default=512, help="sequence length (default 512)")
    parser.add_argument("--presets", help="comma-separated presets of conf/model/ (default: all)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tokens-per-s", type=float, help="the same throughput for every preset")
    source.add_argument("--mfu", type=float, help=f"model FLOPs utilization on --peak-flops "
                                                  f"(the default source: {DEFAULT_MFU})")
    source.add_argument("--bench", type=Path, metavar="FILE.json",
                        help="a bench.json of `python -m llm_sweep.bench`")
    source.add_argument("--probe", action="store_true", help="time a few training steps per preset here")
    parser.add_argument("--peak-flops", type=float,
                        help=f"the peak FLOP/s of --mfu (default {DEFAULT_PEAK_FLOPS:g}, an A100 in bf16)")
    probe = parser.add_argument_group("--probe")
    probe.add_argument("--probe-steps", type=int, default=3, help="timed steps per preset (default 3)")
    probe.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    probe.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    probe.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the table here")
    fit = parser.add_argument_group("--fit")
    fit.add_argument("--fit", type=Path, metavar="FIT.json",
                     help="a scaling-law fit (report --fit): the compute-optimal size, tokens and shape")
    fit.add_argument("--flops", type=float, help="the compute budget in FLOPs (instead of --budget "
                                                 "and a throughput)")
    fit.add_argument("--tokenizer", choices=TOKENIZERS, default="gpt2",
                     help="the suggested shape's vocabulary: the fitted runs' tokenizer (default gpt2)")
    args = parser.parse_args(argv)
    if args.flops is not None and (args.fit is None or not args.flops > 0):
        parser.error("--flops takes a compute > 0 and goes with --fit")
    if args.peak_flops is not None and (args.tokens_per_s or args.bench or args.probe):
        parser.error("--peak-flops goes with --mfu (or the default MFU), not another throughput source")
    return args


def throughput(args: argparse.Namespace, costs: list[PresetCost],
               presets: list[ModelConfig]) -> tuple[dict[str, float], str, dict[str, str]]:
    """Tokens/s per preset from the source the arguments name, how it was obtained, and
    why a preset has none."""
    if args.tokens_per_s is not None:
        return ({cost.name: args.tokens_per_s for cost in costs},
                f"{args.tokens_per_s:,.0f} tokens/s for every preset", {})
    if args.bench is not None:
        bench = read_bench(args.bench)
        return (mfu_throughput(costs, bench.mfu, bench.peak_flops),
                f"MFU {bench.mfu:.3f} of {bench.peak_flops / 1e12:.0f} TFLOP/s, the best mode "
                f"({bench.mode}) of {args.bench}", {})
    if args.probe:
        from llm_sweep.plan.probe import probe_presets  # imports the training stack

        device = resolve_device(args.device)
        rates, notes = probe_presets(presets, device, args.dtype, args.batch_size, args.seq_len,
                                     args.probe_steps)
        return rates, (f"measured: {args.probe_steps} eager AdamW steps of {args.batch_size} x "
                       f"{args.seq_len} tokens, {args.dtype}, on {device}"), notes
    mfu = args.mfu if args.mfu is not None else DEFAULT_MFU
    peak = args.peak_flops or DEFAULT_PEAK_FLOPS
    default = " (default: the seed's A100 run)" if args.mfu is None and args.peak_flops is None else ""
    return mfu_throughput(costs, mfu, peak), f"MFU {mfu:.2f} of {peak / 1e12:.0f} TFLOP/s{default}", {}


def fit_table(args: argparse.Namespace, costs: list[PresetCost], presets: list[ModelConfig]) -> str:
    """plan --fit: the compute-optimal model for the compute of --flops or of the time budget."""
    # scipy (through the fit), only when asked for
    from llm_sweep.plan.fit_plan import (compute_at_tokens_per_s, format_fit_plan, plan_from_fit,
                                         read_fit)

    law = read_fit(args.fit)
    if args.flops is not None:
        compute, source = args.flops, "--flops"
    elif args.tokens_per_s is not None:
        budget_s = parse_duration(args.budget)
        compute = compute_at_tokens_per_s(law, args.tokens_per_s, budget_s)
        source = f"{args.budget} at {args.tokens_per_s:,.0f} tokens/s on the compute-optimal model"
    else:
        rates, rate_source, _ = throughput(args, costs, presets)
        flops_per_s = sorted(rates[cost.name] * cost.flops_per_token for cost in costs if cost.name in rates)
        if not flops_per_s:
            raise DataError("no preset could be measured: no throughput for the compute")
        compute = flops_per_s[len(flops_per_s) // 2] * parse_duration(args.budget)
        source = f"{args.budget} at {flops_per_s[len(flops_per_s) // 2]:.3g} FLOP/s: {rate_source}"
    base = with_vocab_size(ModelConfig(), TOKENIZER_VOCAB_SIZES[args.tokenizer])
    plan = plan_from_fit(law, compute, base, args.seq_len)
    header = f"Plan from {args.fit} for C = {compute:.3g} FLOPs ({source}), seq_len {args.seq_len}."
    return format_fit_plan(plan, presets, args.seq_len, header)


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    args = parse_args(argv)
    budget_s = parse_duration(args.budget)
    presets = load_presets(args.presets.split(",") if args.presets else None)
    costs = [preset_cost(config, args.seq_len) for config in presets]
    if args.fit is not None:
        table = fit_table(args, costs, presets)
    else:
        rates, source, notes = throughput(args, costs, presets)
        header = (f"Plan for {args.budget} ({budget_s:,.0f} s) at seq_len {args.seq_len}. "
                  f"Throughput: {source}.")
        table = format_plan(plan_rows(costs, rates, budget_s, args.seq_len, notes), header)
    console.show(table, end="")
    if args.out:
        args.out.write_text(table)

