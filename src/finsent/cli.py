"""The ``finsent`` command: parse arguments, load the recipe, call one stage function, print a summary.

Flags are recipe overrides (``--push R`` is ``data.push_to_hub=R``), so everything a command does goes through
the recipe's checks. Stage code (torch, datasets, trl) loads lazily through ``ENTRY_POINTS``, so ``finsent --help``
stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finsent import __version__
from finsent.checks import validate_recipe
from finsent.config import LineMap, ModelConfig, RecipeConfig, build_dataclass, dump_config, load_config
from finsent.errors import FinsentError
from finsent.io import STORAGE_ERRNOS
from finsent.registry import REGISTRIES, STAGE_FUNCTIONS, Registry

# Rich falls back to 80 columns when piped, which folds the summary tables; logs and CI read better wider.
console = Console(width=None if sys.stdout.isatty() else 140)


def _add_recipe_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--config", required=required, metavar="RECIPE", help="Recipe YAML path or bundled name (finsent ls recipes)."
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Dotted overrides, e.g. data.seed=3 data.teacher.name=openai.",
    )


# Besides the stages (STAGE_FUNCTIONS), what commands call; loaded when the command runs, so `finsent --help`
# and `finsent ls` stay fast.
ENTRY_POINTS: Registry[Callable[..., Any]] = Registry("entry point")
ENTRY_POINTS.add("run_recipe", "finsent.run:run_recipe")
ENTRY_POINTS.add("check_gguf_tools", "finsent.export.gguf:check_gguf_tools")
ENTRY_POINTS.add("format_size", "finsent.export.compare:format_size")
ENTRY_POINTS.add("load_backend", "finsent.serve.backends:load_backend")
ENTRY_POINTS.add("predict_texts", "finsent.serve.predict:predict_texts")
ENTRY_POINTS.add("predict_file", "finsent.serve.predict:predict_file")
ENTRY_POINTS.add("confidence_for", "finsent.serve.predict:confidence_for")
ENTRY_POINTS.add("load_calibration", "finsent.calibration:load_calibration")
ENTRY_POINTS.add("create_app", "finsent.serve.app:create_app")
ENTRY_POINTS.add("run_server", "finsent.serve.app:run_server")
# What a command line names that is no recipe key: errors about it say so.
COMMAND_LINE = LineMap("<command line>")


def _flag_overrides(pairs: dict[str, Any]) -> list[str]:
    """Return ``key=value`` overrides for the flags that were given (JSON values are YAML, quoting included)."""
    return [f"{key}={json.dumps(value)}" for key, value in pairs.items() if value not in (None, False)]


def _cmd_data(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*_flag_overrides({"data.push_to_hub": args.push}), *args.overrides])
    _print_data_summary(STAGE_FUNCTIONS.get("data")(cfg))
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    overrides = [*_flag_overrides({"output_dir": args.output_dir}), *args.overrides]
    cfg = load_config("tiny-cpu", overrides)
    console.print(f"[bold]finsent quickstart[/]: recipe tiny-cpu -> {cfg.output_dir}")
    if cfg.export.use_gguf:
        try:
            ENTRY_POINTS.get("check_gguf_tools")()
        except FinsentError as err:  # the rest of the pipeline still runs; say what is left out and why
            console.print(f"[yellow]GGUF files and Modelfile skipped[/]: {escape(str(err))}")
            models = [asdict(model) for model in cfg.eval.models if model.backend != "llamacpp"]
            cfg = load_config("tiny-cpu", [*overrides, "export.use_gguf=false", f"eval.models={json.dumps(models)}"])
    code = _run_and_print(cfg, None)
    export_dir = Path(str(cfg.export.output_dir))
    if "export" in cfg.stages and (export_dir / "Modelfile").is_file():
        ggufs = ", ".join(sorted(path.name for path in (export_dir / "gguf").glob("*.gguf")))
        console.print(f"GGUF in [bold]{export_dir / 'gguf'}[/]: {ggufs}")
        console.print(f"Ollama: [bold]ollama create finsent -f {export_dir / 'Modelfile'}[/]")
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    return _run_and_print(cfg, args.stages.split(",") if args.stages else None)


def _run_and_print(cfg: RecipeConfig, stages: list[str] | None) -> int:
    outcomes = ENTRY_POINTS.get("run_recipe")(cfg, stages)
    if not all(outcome.is_main_process for outcome in outcomes):  # accelerate or torchrun: one summary, not one a rank
        return 0
    printers = {"data": _print_data_summary, "eval": _print_eval_summary}
    for outcome in outcomes:
        if outcome.result is not None and outcome.stage in printers:
            printers[outcome.stage](outcome.result)
    table = Table(title=f"finsent run: {cfg.output_dir}")
    for column in ("stage", "status", "seconds", "outputs"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for outcome in outcomes:
        table.add_row(outcome.stage, outcome.status, f"{outcome.seconds:.1f}", outcome.output_dir)
    console.print(table)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    _print_eval_summary(STAGE_FUNCTIONS.get("eval")(load_config(args.config, args.overrides)))
    return 0


def _print_eval_summary(report) -> None:
    if report.metric == "instruct":
        _print_instruct_summary(report)
        return
    table = Table(title="finsent eval")
    columns = ("model", "test set", "n", "accuracy", "macro-F1 [CI]", "weighted-F1", "format", "ECE", "published")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "test set", "published") else "right")
    for row in report.rows:
        anchors = ", ".join(f"{a['model']} {a['value']:.3f}" for a in row["anchors"]) or "–"
        compliance = "–" if row["format_compliance"] is None else f"{row['format_compliance']:.1%}"
        lo, hi = row["macro_f1_ci"]
        calibration = row["calibration"]
        # The ECE predict and serve will see: after the fitted temperature where there is one.
        scores = calibration and (calibration["scaled"] or calibration["raw"])
        table.add_row(
            row["model"],
            row["test_set"],
            f"{row['n']:,}",
            f"{row['accuracy']:.3f}",
            f"{row['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}]",
            f"{row['weighted_f1']:.3f}",
            compliance,
            f"{scores['ece']:.3f}" if scores else "–",
            anchors,
        )
    console.print(table)
    console.print(f"outputs in [bold]{report.output_dir}[/]: report.html, report.md, metrics.json, samples.jsonl")


def _print_instruct_summary(report) -> None:
    table = Table(title="finsent eval (instructions, by task type)")
    for column in ("model", "test set", "task type", "n", "headline [CI]", "exact match", "token F1", "ROUGE-L"):
        table.add_column(column, justify="left" if column in ("model", "test set", "task type") else "right")
    for row in report.rows:
        lo, hi = row["ci"]
        table.add_row(
            row["model"],
            row["test_set"],
            row["task_type"],
            f"{row['n']:,}",
            f"{row['metric']} {row['value']:.3f} [{lo:.3f}, {hi:.3f}]",
            f"{row['exact_match']:.3f}",
            f"{row['token_f1']:.3f}",
            f"{row['rouge_l']:.3f}",
        )
    console.print(table)
    console.print(f"outputs in [bold]{report.output_dir}[/]: report.html, report.md, metrics.json, samples.jsonl")


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, [*_flag_overrides({f"{args.command}.resume": args.resume}), *args.overrides])
    result = STAGE_FUNCTIONS.get(args.command)(cfg)
    if not result.is_main_process:  # launched with accelerate or torchrun: one summary, not one per rank
        return 0
    table = Table(title=f"finsent {args.command}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("train_loss", "train_runtime", "train_steps_per_second", "epoch"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4g}")
    console.print(table)
    if result.resumed_from:
        console.print(f"resumed from {result.resumed_from}")
    if result.best_checkpoint:
        console.print(f"best checkpoint: [bold]{result.best_checkpoint}[/]")
    extra = ", plateau.json" if args.command == "grpo" else ""
    console.print(f"adapter in [bold]{result.adapter_dir}[/]: config.yaml, metrics.jsonl, plots/{extra}, result.json")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.input is None):
        raise FinsentError("give either a TEXT or --input FILE (with --output)")
    if args.input and not args.output:
        raise FinsentError("--input needs --output (a .jsonl file; an existing one is resumed)")
    task = load_config(args.config, _flag_overrides({"task": args.task})).get_task()
    if task.labels is None:
        raise FinsentError("predict labels text; for instructions use finsent eval (task instruct) or finsent serve")
    if not 0 <= args.min_confidence <= 1:
        raise FinsentError(f"--min-confidence: expected a probability in [0, 1], got {args.min_confidence}")
    model = build_dataclass(ModelConfig, _model_flags(args) | {"adapter": args.adapter}, (), COMMAND_LINE)
    confidence = ENTRY_POINTS.get("confidence_for")(model, args.min_confidence)
    backend = ENTRY_POINTS.get("load_backend")(model)
    if args.text is not None:
        prediction = ENTRY_POINTS.get("predict_texts")(
            backend, [task.anonymize(args.text)], task, confidence=confidence
        )[0]
        flag = "" if prediction.status == "ok" else f"  [yellow]({prediction.status}: {prediction.issue})[/]"
        label, name = prediction.label, task.display(prediction.label)
        console.print(
            f"[bold]label:[/] {escape(name if name == label or label is None else f'{name} ({label})')}{flag}"
        )
        if prediction.probabilities is not None:
            shares = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
            console.print(
                f"[bold]probabilities:[/] {', '.join(f'{k} {v:.3f}' for k, v in shares)} "
                f"(temperature {confidence.calibration.temperature:g})"
            )
        else:
            console.print("[bold]probabilities:[/] none (no <answer> tag, or a server that sends no logprobs)")
        console.print(f"[bold]reasoning:[/] {escape(prediction.reasoning)}", highlight=False)
        return 0
    result = ENTRY_POINTS.get("predict_file")(
        backend,
        args.input,
        args.output,
        task,
        batch_size=args.batch_size,
        text_column=args.text_column,
        confidence=confidence,
    )
    ok = sum(p.status == "ok" for p in result.predictions)
    abstained = sum(p.label == "abstain" for p in result.predictions)
    console.print(
        f"{len(result.predictions):,} rows ({result.num_new:,} new, {result.num_resumed:,} from an earlier "
        f"run), format ok {ok:,}"
        + (f", abstained {abstained:,} (below {args.min_confidence:g})" if args.min_confidence else "")
        + f": [bold]{result.output_path}[/]"
    )
    return 0


def _model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ModelConfig fields that predict's and serve's flags set."""
    fields = {"path": args.model, "backend": args.backend, "base_url": args.base_url, "calibration": args.calibration}
    return fields | {
        "max_new_tokens": args.max_new_tokens,
        **({"batch_size": args.batch_size} if "batch_size" in args else {}),
    }


def _cmd_export(args: argparse.Namespace) -> int:
    flags = {"export.model": args.model, "export.push_to_hub": args.push}
    cfg = load_config(args.config, [*_flag_overrides(flags), *args.overrides])
    result = STAGE_FUNCTIONS.get("export")(cfg)
    if result.gate:
        gate = result.gate
        console.print(
            f"reload gate: max logit diff {gate['max_abs_diff']:.3g} <= {gate['tolerance']:.3g} "
            f"(adapter effect {gate['adapter_effect']:.3g}), format {gate['merged_compliance']:.0%} both ways"
        )
    if result.comparison:
        table = Table(title="finsent export: size against quality")
        for column in ("artifact", "backend", "size", "load s", "tokens/s", "accuracy", "macro-F1", "format"):
            table.add_column(column, justify="left" if column in ("artifact", "backend") else "right")
        for row in result.comparison:
            table.add_row(
                row["artifact"],
                row["backend"],
                ENTRY_POINTS.get("format_size")(row["size_bytes"]),
                f"{row['load_s']:.2f}",
                "–" if row["tokens_per_s"] is None else f"{row['tokens_per_s']:.1f}",
                f"{row['accuracy']:.3f}",
                f"{row['macro_f1']:.3f}",
                f"{row['format_compliance']:.1%}",
            )
        console.print(table)
    console.print(f"merged model in [bold]{result.merged_dir}[/]")
    for kind, path in result.gguf.items():
        console.print(f"GGUF {kind}: {path}")
    if result.modelfile:
        console.print(f"Ollama: ollama create {cfg.export.name} -f {result.modelfile}")
    if result.pushed_to:
        console.print(f"uploaded to [bold]{result.pushed_to}[/]")
    console.print(
        f"outputs in [bold]{result.output_dir}[/]: README.md (model card), comparison.md/json/png, result.json"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    flags = {
        "serve.model": _model_flags(args) if args.model else None,
        "serve.host": args.host,
        "serve.port": args.port,
        "serve.api_key_env": args.api_key_env,
        "serve.min_confidence": args.min_confidence,
    }
    cfg = load_config(args.config, [*_flag_overrides(flags), *args.overrides])
    serve = cfg.serve
    if serve.model is None:
        raise FinsentError("give --model (a model or adapter dir, a GGUF with --backend llamacpp) or set serve.model")
    validate_recipe(cfg, ["serve"])
    calibration = ENTRY_POINTS.get("load_calibration")(serve.model)
    backend = ENTRY_POINTS.get("load_backend")(serve.model)
    app = ENTRY_POINTS.get("create_app")(
        backend, serve, cfg.get_task(), model_name=str(serve.model.name), calibration=calibration
    )
    console.print(
        f"serving [bold]{serve.model.name}[/] ({serve.model.backend}) on http://{serve.host}:{serve.port} "
        f"(API docs at /docs{', API key from $' + serve.api_key_env if serve.api_key_env else ''})"
    )
    ENTRY_POINTS.get("run_server")(app, serve)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    validate_recipe(cfg)
    if args.show:
        console.print(dump_config(cfg), markup=False, highlight=False)
    console.print(f"[green]ok[/]: {cfg.source_path or args.config} is a valid recipe")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    table = Table(title=f"finsent {args.what}")
    table.add_column("name", style="bold")
    table.add_column("what it is")
    if args.what == "recipes":
        for item in sorted((resources.files("finsent") / "recipes").iterdir(), key=lambda p: p.name):
            if item.name.endswith(".yaml"):
                first = item.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
                table.add_row(item.name.removesuffix(".yaml"), first)
    else:
        registry = REGISTRIES.get(args.what)
        for name in registry.names():
            table.add_row(name, escape(registry.help(name)))
    console.print(table)
    return 0


def _print_data_summary(result) -> None:
    table = Table(title="finsent data")
    table.add_column("split")
    labels = sorted({label for counts in result.report["splits"].values() for label in counts})
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for split, counts in result.report["splits"].items():
        table.add_row(split, *(f"{counts.get(label, 0):,}" for label in labels), f"{sum(counts.values()):,}")
    console.print(table)
    funnel = result.report["funnel"]
    console.print(" -> ".join(f"{step} {n:,}" for step, n in funnel.items() if n or step == "written"))
    console.print(f"outputs in [bold]{result.output_dir}[/]: train/validation/test.jsonl, report.json, README.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finsent", description="Train small financial LLMs that explain themselves.")
    parser.add_argument("--version", action="version", version=f"finsent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="Build the chain-of-thought ChatML dataset.")
    _add_recipe_args(data)
    data.add_argument("--push", metavar="REPO_ID", help="Upload the dataset to the Hugging Face Hub.")
    data.set_defaults(handler=_cmd_data)

    quickstart = commands.add_parser("quickstart", help="Run the offline tiny-cpu recipe (no server, hub or GPU).")
    quickstart.add_argument("--output-dir", help="Run directory (default: runs/tiny-cpu).")
    quickstart.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Dotted overrides.")
    quickstart.set_defaults(handler=_cmd_quickstart)

    run = commands.add_parser("run", help="Run a recipe's stages in order; finished stages are skipped.")
    _add_recipe_args(run)
    run.add_argument("--stages", help="Comma-separated subset, e.g. data,sft (default: the recipe's stages).")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="Check a recipe without running it.")
    _add_recipe_args(validate)
    validate.add_argument("--show", action="store_true", help="Print the resolved recipe.")
    validate.set_defaults(handler=_cmd_validate)

    evaluate = commands.add_parser("eval", help="Evaluate models and baselines on test sets; write a report.")
    _add_recipe_args(evaluate)
    evaluate.set_defaults(handler=_cmd_eval)

    for name, help_text in (
        ("sft", "SFT warm-up: TRL SFTTrainer with a LoRA (QLoRA on CUDA) adapter."),
        ("grpo", "GRPO from the SFT adapter with the rewards, early stopping on a reward plateau."),
    ):
        train = commands.add_parser(name, help=help_text)
        _add_recipe_args(train)
        train.add_argument("--resume", action="store_true", help="Continue from the last checkpoint.")
        train.set_defaults(handler=_cmd_train)

    predict = commands.add_parser("predict", help="Label a text, or stream a CSV/JSONL file to JSONL (resumable).")
    predict.add_argument("text", nargs="?", help="The text to label.")
    predict.add_argument("--model", required=True, help="Hub id or dir, GGUF file (llamacpp), or served model name.")
    predict.add_argument("--backend", default="transformers", help="transformers, llamacpp or openai.")
    predict.add_argument("--adapter", help="LoRA adapter dir on top of --model (transformers).")
    predict.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: the server's /v1 URL.")
    predict.add_argument("--input", help="A .csv or .jsonl file with a text column.")
    predict.add_argument("--output", help="The .jsonl to write; rows already in it are skipped.")
    predict.add_argument("--text-column", default="text", help="Column of --input holding the text.")
    predict.add_argument("--batch-size", type=int, default=8, help="Prompts per batch (requests in flight).")
    predict.add_argument("--max-new-tokens", type=int, default=256, help="Longest completion in tokens.")
    predict.add_argument(
        "--config", metavar="RECIPE", help="Recipe whose task and prompt to use (default: the built-in ones)."
    )
    predict.add_argument("--task", help="Task whose labels and prompt to use (finsent ls tasks; default: sentiment).")
    predict.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="Answer abstain where the model's label is less likely than P (calibrated; default 0: never).",
    )
    predict.add_argument(
        "--calibration", metavar="FILE", help="calibration.json to apply (default: the one beside the model)."
    )
    predict.set_defaults(handler=_cmd_predict)

    export = commands.add_parser("export", help="Merge, gate, GGUF + Ollama export, size/quality comparison.")
    _add_recipe_args(export, required=False)
    export.add_argument("--model", help="Adapter dir (merged) or model dir to export (default: the GRPO output).")
    export.add_argument(
        "--push", metavar="REPO_ID", help="Upload model, GGUFs and model card to the Hugging Face Hub."
    )
    export.set_defaults(handler=_cmd_export)

    serve = commands.add_parser("serve", help="HTTP service: /v1/sentiment, /v1/chat/completions, a web page.")
    _add_recipe_args(serve, required=False)
    serve.add_argument("--model", help="Model or adapter dir, GGUF file (llamacpp), or served model name (openai).")
    serve.add_argument("--backend", default="transformers", help="transformers, llamacpp or openai.")
    serve.add_argument("--host", help="Interface to listen on (default 127.0.0.1).")
    serve.add_argument("--port", type=int, help="TCP port (default 8000).")
    serve.add_argument("--api-key-env", metavar="VAR", help="Require the API key held in this environment variable.")
    serve.add_argument("--max-new-tokens", type=int, default=256, help="Longest completion in tokens.")
    serve.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: the upstream /v1 URL.")
    serve.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="/v1/sentiment answers abstain where the model's label is less likely than P (serve.min_confidence).",
    )
    serve.add_argument(
        "--calibration", metavar="FILE", help="calibration.json to apply (default: the one beside the model)."
    )
    serve.set_defaults(handler=_cmd_serve)

    ls = commands.add_parser("ls", help="List what can be named in a recipe.")
    ls.add_argument("what", choices=["recipes", *REGISTRIES.names()])
    ls.set_defaults(handler=_cmd_ls)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 on a FinsentError, with its message and no traceback)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may follow options too (`run --config R a=1 --stages sft b=2`), which argparse alone refuses.
    stray = [arg for arg in extra if arg.startswith("-") or "=" not in arg or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        return args.handler(args)
    except FinsentError as err:
        message = str(err)
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        message = f"{err.filename}: {err.strerror}" if err.filename else str(err)
    # Unfolded, so the file:line: field prefix stays on one line for editors and grep.
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    return 2


if __name__ == "__main__":
    sys.exit(main())
