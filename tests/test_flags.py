"""Every option of every subcommand, through the real parser, with a valid value that is not its
default; then the path the command line takes with it (for ``run``: the run configs and the
validated plan).  An option with no entry in the table below fails the test, so a new flag cannot
ship untested.  Plus the hyperparameter flags end to end, read back from the live objects."""

import json
import math

import pytest

import loops
from bench.config import recipe
from bench.cli import build_parser, main, plan_from_args
from bench.regress import build_parser as regress_parser


def _run0(cells):
    return cells[0].run


# (command, flag) -> (tokens after the flag, check of (args, cells): the value reached the plan).
# ``{tmp}`` in a token is a temporary folder; ``{config}`` a TOML recipe written there.
RUN = {
    "--loops": (["manual,trainer"], lambda a, c: {x.loop for x in c} == {"manual", "trainer"}),
    "--device": (["all"], lambda a, c: {"cpu", "cuda"} <= {x.device for x in c}),
    "--precision": (["fp32,bf16"], lambda a, c: {x.precision for x in c} == {"fp32", "bf16"}),
    "--repeats": (["2"], lambda a, c: {x.repeat for x in c} == {0, 1}),
    "--nproc": (["2"], lambda a, c: all(x.nproc == 2 for x in c)),
    "--nnodes": (["2"], lambda a, c: all(x.nnodes == 2 for x in c)),
    "--node-rank": (["1", "--nnodes", "2"], lambda a, c: a.node_rank == 1),
    "--master-addr": (["node0.example"], lambda a, c: a.master_addr == "node0.example"),
    "--master-port": (["29600"], lambda a, c: a.master_port == 29600),
    "--model": (["minilm-l6"], lambda a, c: _run0(c).model == "minilm-l6"),
    "--no-weights": ([], lambda a, c: _run0(c).no_weights),
    "--glue-dir": (["{tmp}"], lambda a, c: _run0(c).glue_dir is not None),
    "--train-samples": (["64"], lambda a, c: _run0(c).train_samples == 64),
    "--eval-samples": (["32"], lambda a, c: _run0(c).eval_samples == 32),
    "--batch-size": (["16,32"], lambda a, c: {x.run.batch_size for x in c} == {16, 32}),
    "--lr": (["1e-4"], lambda a, c: _run0(c).lr == 1e-4),
    "--epochs": (["2"], lambda a, c: _run0(c).epochs == 2),
    "--max-steps": (["12"], lambda a, c: _run0(c).max_steps == 12),
    "--warmup-steps": (["10"], lambda a, c: _run0(c).warmup_steps == 10),
    "--scheduler": (["cosine"], lambda a, c: _run0(c).scheduler == "cosine"),
    "--weight-decay": (["0.01"], lambda a, c: _run0(c).weight_decay == 0.01),
    "--defaults": (["native", "--loops", "trainer"], lambda a, c: _run0(c).max_grad_norm == 1.0),
    "--max-grad-norm": (["1.0"], lambda a, c: _run0(c).max_grad_norm == 1.0),
    "--adamw": (["fused"], lambda a, c: _run0(c).adamw == "fused"),
    "--grad-accum": (["2"], lambda a, c: _run0(c).grad_accum == 2),
    "--seed": (["7"], lambda a, c: _run0(c).seed == 7),
    "--seeds": (["1,2"], lambda a, c: {x.run.seed for x in c} == {1, 2}),
    "--eval-batch-size": (["64"], lambda a, c: _run0(c).eval_batch_size == 64),
    "--finetune": (["full,lora"], lambda a, c: {x.run.finetune for x in c} == {"full", "lora"}),
    "--lora-r": (["4", "--finetune", "lora"], lambda a, c: _run0(c).lora_r == 4),
    "--lora-alpha": (["16", "--finetune", "lora"], lambda a, c: _run0(c).lora_alpha == 16),
    "--lora-dropout": (["0.05", "--finetune", "lora"], lambda a, c: _run0(c).lora_dropout == 0.05),
    "--lora-targets": (["query,key", "--finetune", "lora"], lambda a, c: _run0(c).lora_targets == ("query", "key")),
    "--lora-lr": (["5e-4", "--finetune", "full,lora"],
                  lambda a, c: {(x.run.finetune, x.run.lr) for x in c} == {("full", 5e-5), ("lora", 5e-4)}),
    "--preset": (["tutorial,fast"], lambda a, c: {x.run.preset for x in c} == {None, "fast"}),
    "--group-by-length": ([], lambda a, c: _run0(c).group_by_length),
    "--pad-to-multiple-of": (["8"], lambda a, c: _run0(c).pad_to_multiple_of == 8),
    "--compile": ([], lambda a, c: _run0(c).compile),
    "--attn": (["eager"], lambda a, c: _run0(c).attn == "eager"),
    "--num-workers": (["2"], lambda a, c: _run0(c).num_workers == 2),
    "--pin-memory": ([], lambda a, c: _run0(c).pin_memory),
    "--eval-every": (["5"], lambda a, c: _run0(c).eval_every == 5),
    "--target-f1": (["0.8", "--eval-every", "5"], lambda a, c: _run0(c).target_f1 == 0.8),
    "--timing-warmup": (["3"], lambda a, c: _run0(c).timing_warmup == 3),
    "--parity": ([], lambda a, c: _run0(c).parity),
    "--no-phases": ([], lambda a, c: not _run0(c).phases),
    "--out": (["{tmp}/out"], lambda a, c: a.out.endswith("out")),
    "--report-to": (["tensorboard,mlflow"], lambda a, c: a.report_to == ["tensorboard", "mlflow"]),
    "--resume": (["{tmp}"], lambda a, c: a.resume is not None),
    "--cell-timeout": (["60"], lambda a, c: a.cell_timeout == 60),
    "--cell-memory-limit": (["2"], lambda a, c: a.cell_memory_limit == 2.0),
    "--peak-tflops": (["989.5"], lambda a, c: _run0(c).peak_tflops == 989.5),
    "--no-progress": ([], lambda a, c: a.no_progress),
    "--in-process": ([], lambda a, c: a.in_process),
    "--executor": (["ray"], lambda a, c: a.executor == "ray"),
    "--ray-address": (["ray://head:10001"], lambda a, c: a.ray_address == "ray://head:10001"),
    "--cpus-per-cell": (["3"], lambda a, c: a.cpus_per_cell == 3),
    "--cells-at-once": (["4"], lambda a, c: a.cells_at_once == 4),
    "--config": (["{config}"], lambda a, c: _run0(c).lr == 2e-5 and _run0(c).max_grad_norm == 1.0),
    "--print-config": ([], None),  # prints the recipe and exits: test_print_config_round_trips
}
OTHERS = {
    "report": {"-o": ["{tmp}/r.md"], "--csv": ["{tmp}/r.csv"], "--report-to": ["tensorboard"]},
    "compare": {"--differ": ["num_workers"], "--fail-above": ["10"], "-o": ["{tmp}/c.md"]},
    "explain": {"--from": ["manual"], "--to": ["trainer"], "--repeats": ["2"], "--cell-timeout": ["60"],
                "--no-progress": []},
    "env": {"--json": []},
    "inspect": {"--model": ["minilm-l6"], "--sentence1": ["A cat sat."], "--sentence2": ["A cat was sitting."]},
    "export": {"--format": ["parquet"], "-o": ["{tmp}/t.parquet"], "--superseded": []},
}
REGRESS = {"--baseline-dir": ["{tmp}"], "--machine-class": ["cpu-avx2-2core"], "--save": [], "--save-ratios": [],
           "--max-slowdown": ["3.0"], "--max-ratio-growth": ["0.3"], "--max-meter-overhead": ["0.02"]}


def _subparsers(parser):
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(parser) -> list[str]:
    """Each option's first long (else short) name, help and version aside."""
    out = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        out.append(longs[0] if longs and not (action.option_strings[0] == "-o") else action.option_strings[0])
    return out


def test_every_option_has_a_table_entry():
    subs = _subparsers(build_parser())
    assert set(subs) == {"run", *OTHERS}, "a new subcommand needs its options in OTHERS"
    missing = [f"run {o}" for o in _options(subs["run"]) if o not in RUN]
    missing += [f"{name} {o}" for name, table in OTHERS.items() for o in _options(subs[name]) if o not in table]
    missing += [f"bench.regress {o}" for o in _options(regress_parser()) if o not in REGRESS]
    assert not missing, f"options with no valid value in tests/test_flags.py: {', '.join(missing)}"
    stale = [o for o in RUN if o not in _options(subs["run"])]
    assert not stale, f"table entries for options the parser no longer has: {stale}"


def _fill(tokens, tmp_path):
    config = tmp_path / "recipe.toml"
    config.write_text('lr = 2e-5\nmax-grad-norm = 1.0\nloops = ["manual"]\n')
    return [t.replace("{tmp}", str(tmp_path)).replace("{config}", str(config)) for t in tokens]


@pytest.mark.parametrize("flag", [f for f, (_, check) in RUN.items() if check is not None])
def test_run_option_reaches_the_plan(flag, tmp_path):
    tokens, check = RUN[flag]
    base = ["run", "--loops", "manual"] if "--loops" not in (flag, *tokens) else ["run"]
    argv = base + [flag, *_fill(tokens, tmp_path)]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:  # as main() does: the file's options before the command line's
        args = parser.parse_args(recipe.with_config(argv, args.config[0], recipe.run_parser(parser)))
    runs, cells = plan_from_args(args)
    default_runs, default_cells = plan_from_args(build_parser().parse_args(["run", "--loops", "manual"]))
    assert cells and check(args, cells), f"{flag} {' '.join(tokens)} did not reach the plan"
    assert (args != build_parser().parse_args(["run", "--loops", "manual"]) or cells != default_cells)


def test_print_config_round_trips(tmp_path, capsys):
    """--print-config writes the resolved options; read back with --config they give the same run."""
    argv = ["run", "--loops", "manual,trainer", "--max-grad-norm", "1.0", "--warmup-steps", "10", "--no-phases",
            "--batch-size", "16,32", "--preset", "fast", "--seed", "3"]
    assert main([*argv, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "max-grad-norm = 1.0" in text and "no-phases = true" in text and 'loops = ["manual", "trainer"]' in text
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    assert main(["run", "--config", str(path), "--print-config"]) == 0
    assert capsys.readouterr().out == text
    parser = build_parser()
    from_file = parser.parse_args(recipe.with_config(["run", "--config", str(path)], str(path),
                                                     recipe.run_parser(parser)))
    assert plan_from_args(from_file)[1] == plan_from_args(parser.parse_args(argv))[1]


def test_seeds_round_trip_and_a_file_seed_gives_way_to_command_line_seeds(tmp_path, capsys):
    assert main(["run", "--seeds", "1,2", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "seeds = [1, 2]" in text and "# seed: not set (--seeds given)" in text
    path = tmp_path / "recipe.toml"
    path.write_text("seed = 7\n")
    assert main(["run", "--config", str(path), "--seeds", "3,4", "--print-config"]) == 0
    assert "seeds = [3, 4]" in capsys.readouterr().out


def test_flags_given_win_over_the_config_file(tmp_path, capsys):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"lr": 2e-5, "max_grad_norm": 1.0}))
    assert main(["run", "--config", str(path), "--lr", "1e-4", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "lr = 0.0001" in text and "max-grad-norm = 1.0" in text


@pytest.mark.parametrize("content,suffix,needle", [
    ('{"lr": -1}', ".json", "lr = -1: must be > 0"),
    ('{"learn_rate": 1}', ".json", "unknown key 'learn_rate'"),
    ('{"lr": 1e-4, "learning_rate": 2e-5}', ".json", "sets lr twice (lr and learning_rate)"),
    ('{"max-steps": 4, "max_steps": 5}', ".json", "sets max-steps twice (max-steps and max_steps)"),
    ('{"precision": "fp32", "bf16": true}', ".json", "sets precision twice (precision and bf16)"),
    ('{"adam_beta1": 0.8}', ".json", "adam_beta1 = 0.8: would change training"),
    ('{"gradient_checkpointing": true}', ".json", "gradient_checkpointing = True: would change training"),
    ('{"num_train_epochs": 2.5}', ".json", "num_train_epochs = 2.5: bench trains whole epochs"),
    ('{"optim": "adafactor"}', ".json", "optim = 'adafactor': bench runs the optimizers"),
    ("lr = ", ".toml", "not valid TOML"),
    ('{"parity": "yes"}', ".json", "parity takes true or false"),
    ('{"adamw": "sgd"}', ".json", "adamw = 'sgd'"),
    ("[1, 2]", ".json", "expected a table of options"),
    ("lr: 1", ".yaml", "the formats read are TOML (.toml) and JSON (.json)"),
])
def test_a_bad_config_file_is_one_line(tmp_path, capsys, content, suffix, needle):
    path = tmp_path / f"recipe{suffix}"
    path.write_text(content)
    assert main(["run", "--config", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("bench: error: --config") and needle in err[0], err


@pytest.fixture(scope="module")
def native_out(glue_dir, tmp_path_factory):
    """docs/loops.md's out-of-the-box example, small: two loops with their own defaults, --parity."""
    from tests.test_cli import run_cli

    out = tmp_path_factory.mktemp("native") / "out"
    result = run_cli("run", "--loops", "manual,trainer", "--device", "cpu", "--defaults", "native", "--model", "tiny", "--glue-dir",
                     glue_dir, "--max-steps", "4", "--timing-warmup", "1", "--train-samples", "32",
                     "--eval-samples", "8", "--parity", "--in-process", "--out", str(out))
    return out, result


def test_native_defaults_with_parity_exits_0_and_says_the_settings_differ(native_out):
    out, result = native_out
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("parity cpu/fp32: trainer"))
    assert "settings differ: not expected to agree" in line and "max_grad_norm" in line and "adamw" in line
    assert "FAILS" not in result.stdout
    report = (out / "report.md").read_text()
    assert "settings differ: not expected to agree" in report


@pytest.mark.parametrize("command", sorted(OTHERS))
def test_other_commands_take_each_option(command, native_out, tmp_path, capsys):
    """Each option of report, compare, explain, env and inspect, through main() or the command's
    own planning (explain's flips), with the value from the table."""
    out, _ = native_out
    table = {flag: _fill(tokens, tmp_path) for flag, tokens in OTHERS[command].items()}
    if command == "report":
        assert main(["report", str(out), "-o", *table["-o"], "--csv", *table["--csv"], "--report-to",
                     *table["--report-to"]]) == 0
        assert (tmp_path / "r.md").read_text().startswith("#") and (tmp_path / "r.csv").read_text()
        assert (out / "tensorboard" / "report").is_dir()  # the report logged, as a run of its own
    elif command == "export":
        import pandas as pd

        assert main(["export", str(out), *[t for f, v in table.items() for t in (f, *v)]]) == 0
        assert len(pd.read_parquet(tmp_path / "t.parquet")) == len(read_records_of(out))
    elif command == "compare":
        assert main(["compare", str(out), str(out), "--differ", *table["--differ"], "--fail-above",
                     *table["--fail-above"], "-o", *table["-o"]]) == 0
        assert "bench compare" in (tmp_path / "c.md").read_text()
    elif command == "explain":
        from bench.commands.explain import plan_flips
        from bench.records import read_records

        args = build_parser().parse_args(["explain", str(out), *[t for f, v in table.items() for t in (f, *v)]])
        assert (args.from_loop, args.to_loop, args.repeats, args.cell_timeout, args.no_progress) == \
            ("manual", "trainer", 2, 60.0, True)
        cells, found = plan_flips(read_records(out), args.from_loop, args.to_loop, args.repeats)
        assert cells and {c.repeat for c in cells} == {0, 1}
        assert "max_grad_norm" in found[0]["differences"].settings
    elif command == "env":
        assert main(["env", "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["bench"]["loops_installed"] == loops.available()
        assert "cpu_family_model" in info["bench"] and "torch_version" in info["collect_env"]
        assert "nccl_version" in info["collect_env"] and isinstance(info["environment_variables"], dict)
    elif command == "inspect":
        assert main(["inspect", "--model", *table["--model"], "--sentence1", *table["--sentence1"],
                     "--sentence2", *table["--sentence2"]]) == 0
        shown = capsys.readouterr().out
        assert "tokenizer('A cat sat.', 'A cat was sitting.')" in shown
        assert ["[CLS]", "a", "cat", "sat", ".", "[SEP]", "a", "cat", "was", "sitting", ".", "[SEP]"] == \
            next(line.split()[1:] for line in shown.splitlines() if line.split()[:1] == ["token"])


def read_records_of(out):
    from bench.records import read_records

    return read_records(out)


def test_regress_takes_each_option(tmp_path):
    args = regress_parser().parse_args(["x.json", *[t for f, v in REGRESS.items() for t in (f, *_fill(v, tmp_path))]])
    assert (args.machine_class, args.save, args.save_ratios, args.max_slowdown, args.max_ratio_growth,
            args.max_meter_overhead) == ("cpu-avx2-2core", True, True, 3.0, 0.3, 0.02)
    assert str(args.baseline_dir) == str(tmp_path)


def test_env_json_names_the_variables_that_change_results(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)["environment_variables"]
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "UNRELATED_VARIABLE" not in env


@pytest.fixture(scope="module")
def hyper_records(glue_dir, tmp_path_factory):
    """A public recipe's three flags (clipping 1.0, weight decay 0.01, 10 warm-up steps), every loop."""
    from bench.records import read_records
    from tests.test_cli import run_cli

    out = tmp_path_factory.mktemp("hyper") / "out"
    result = run_cli("run", "--loops", "all", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir, "--max-steps", "12",
                     "--timing-warmup", "1", "--train-samples", "96", "--eval-samples", "8",
                     "--max-grad-norm", "1.0", "--weight-decay", "0.01", "--warmup-steps", "10", "--in-process",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    from bench.records import Record

    return read_records(out)


@pytest.mark.parametrize("loop", loops.available())
def test_hyperparameter_flags_reach_the_live_objects(hyper_records, loop):
    r = next(r for r in hyper_records if r.loop == loop)
    assert r.status == "ok", r.reason
    s = r.settings
    assert s["grad_clip_max_norm"] == 1.0
    assert 0.01 in {g["weight_decay"] for g in s["param_groups"]}
    assert s["scheduler"].get("num_warmup_steps", 10) == 10
    lrs = r.step_lrs
    assert len(lrs) == 12
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11])), lrs  # rising over the 10 warm-up steps
    assert math.isclose(max(lrs), 5e-5, rel_tol=1e-6) and lrs[11] < lrs[10]  # then decaying from the peak
    assert r.step_grad_norms and len(r.step_grad_norms) == 12  # clipping on: the norm of every step


def test_help_shows_defaults_of_zero_and_the_preset_choices(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "this node's rank (multi-node) (default: 0)" in text
    assert "--preset PRESET tutorial, fast, or a comma list" in text
    for action in recipe.actions(recipe.run_parser(build_parser())).values():
        assert action.help, f"{action.option_strings[0]} has no help"
    assert all(a.help for a in regress_parser()._actions)
