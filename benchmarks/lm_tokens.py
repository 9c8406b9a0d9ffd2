"""Greedy decoding speed of the causal-LM family's variants, side by side in one run: tokens/s of the PyTorch fp32
variant against the onnxruntime-genai int8 and int4 variants (og.Generator), with their size on disk and the
perplexity ratio ``zoo eval`` recorded.

    python benchmarks/lm_tokens.py [--registry registry.yaml] [--model smollm2-hamlet] [--new-tokens 64] [--repeats 3]
    python benchmarks/lm_tokens.py --base-dir DIR [--samples 50]

The variants must be built and evaluated first (`zoo run smollm2-hamlet`). With ``--base-dir`` (a transformers
folder, e.g. the converted GGUF base under ~/.cache/modelzoo/converted/) nothing needs to be built: int8 and int4 are
built from that folder with the family's int8 and int4 recipes into a temporary folder, and perplexity is measured
here on the family's first ``--samples`` test chunks (128 tokens) for all three. Every variant decodes the same
prompts, with ``ZOO_THREADS`` (else every core) threads; the first run of each is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

VARIANTS = ("fp32", "int8", "int4")


def tokens_per_s(gen, prompts: list[str], new_tokens: int, repeats: int) -> tuple[float, int]:
    """Median over ``repeats`` of (new tokens / seconds) for greedy decoding of every prompt; and tokens per run."""
    gen.continue_text(prompts[0], 4)  # warm-up: one-time session and kernel setup
    rates, count = [], 0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        for prompt in prompts:
            ids = gen.tokenizer(prompt, return_tensors="pt")["input_ids"]
            count += gen._generate(ids, new_tokens).shape[1] - ids.shape[1]
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), count


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and f.name != "provenance.json") / 1e6


def main(argv: list[str] | None = None) -> int:
    from zoo import formats, plan, registry
    from zoo.families.text_generation import load_generator
    from zoo.status import read_results
    from zoo.store import Store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, default=Path("registry.yaml"))
    ap.add_argument("--model", default="smollm2-hamlet")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base-dir", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args(argv)
    if args.base_dir is not None:
        return from_base(args)
    loaded = registry.load(args.registry)
    store = Store.for_registry(loaded.path)
    nodes = {n.variant_id: n for n in plan.make(loaded) if n.model_id == args.model}
    missing = [v for v in VARIANTS if v not in nodes or not store.is_built(nodes[v].hash)]
    if missing:
        print(f"{args.model}: {', '.join(missing)} not built: run `zoo run {args.model}` first", file=sys.stderr)
        return 1
    model = loaded.model(args.model)
    from zoo.families.text_generation import data

    prompts = [t[:200] for t in data.load_splits(model.dataset, loaded.root, "dataset").test[:args.prompts]]
    threads = formats.threads()
    formats.set_threads()
    rows = []
    for v in VARIANTS:
        art = store.artifact(nodes[v].hash)
        gen = load_generator(art, threads=threads)
        rate, count = tokens_per_s(gen, prompts, args.new_tokens, args.repeats)
        results = read_results(store, nodes[v]) or {}
        ppl = (results.get("metrics") or {}).get("perplexity")
        rows.append((v, gen.runtime, gen.dtype, size_mb(art), ppl, rate, count))
        del gen
    base = rows[0]
    print(f"{args.model}: greedy decoding, {len(prompts)} prompts × up to {args.new_tokens} new tokens, "
          f"median of {args.repeats}, {threads} threads")
    print(f"{'variant':8} {'runtime':18} {'dtype':5} {'MB':>7} {'size/fp32':>9} {'ppl':>7} {'fp32/ppl':>8} "
          f"{'tok/s':>7} {'×fp32':>6}")
    for v, runtime, dtype, mb, ppl, rate, _ in rows:
        ratio = f"{base[4] / ppl:.4f}" if ppl and base[4] else "-"
        print(f"{v:8} {runtime:18} {dtype:5} {mb:7.1f} {mb / base[3]:9.3f} {ppl or float('nan'):7.2f} {ratio:>8} "
              f"{rate:7.1f} {rate / base[5]:6.2f}")
    return 0


def from_base(args: argparse.Namespace) -> int:
    """fp32 (PyTorch) against int8 and int4 built here from the same folder, perplexity measured in this run."""
    import tempfile

    from zoo import formats, registry
    from zoo.families.text_generation import data, genai, load_generator
    from zoo.families.text_generation.techniques import builder_options

    loaded = registry.load(args.registry)
    model = loaded.model(args.model)
    recipes = {p: loaded.recipes[model.variants[p].recipe] for p in ("int8", "int4")}
    splits = data.load_splits(model.dataset, loaded.root, "dataset")
    prompts = [t[:200] for t in splits.test[:args.prompts]]
    texts = splits.test[:args.samples]
    threads = formats.threads()
    formats.set_threads()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lm-tokens-") as tmp:
        folders = {"fp32": args.base_dir}
        for precision in ("int8", "int4"):
            start = time.perf_counter()
            folders[precision] = Path(tmp) / precision
            genai.build(args.base_dir, folders[precision], precision, builder_options(recipes[precision].params),
                        Path(tmp) / "cache")
            print(f"built {precision} with recipes/{recipes[precision].name}.yaml in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        for v, folder in folders.items():
            gen = load_generator(folder, threads=threads)
            ppl = gen.perplexity(texts, 128)
            rate, _ = tokens_per_s(gen, prompts, args.new_tokens, args.repeats)
            mb = sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and (
                f.suffix in (".safetensors", ".data", ".onnx"))) / 1e6
            rows.append((v, gen.runtime, gen.dtype, mb, ppl, rate))
            print(f"measured {v}", flush=True)
            del gen
    base = rows[0]
    print(f"{args.model} base {args.base_dir}: perplexity on {len(texts)} test chunks (128 tokens), "
          f"greedy decoding of {len(prompts)} prompts × up to {args.new_tokens} new tokens "
          f"(median of {args.repeats}), {threads} threads")
    print(f"{'variant':8} {'runtime':18} {'dtype':5} {'weights MB':>10} {'size/fp32':>9} {'ppl':>7} {'fp32/ppl':>8} "
          f"{'tok/s':>7} {'×fp32':>6}")
    for v, runtime, dtype, mb, ppl, rate in rows:
        print(f"{v:8} {runtime:18} {dtype:5} {mb:10.1f} {mb / base[3]:9.3f} {ppl:7.2f} {base[4] / ppl:8.4f} "
              f"{rate:7.1f} {rate / base[5]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
