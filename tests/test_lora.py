"""--finetune full,lora: LoRA through PEFT as an axis beside full fine-tuning.  The flags through the
real parser, the adapter the harness builds (the same draw in every loop), every loop's path with
step-loss parity under LoRA, the records' new fields checked against what the live objects hold,
and the report's comparison recomputed from the records with scikit-learn."""

import hashlib
import json

import pytest
import torch

import loops
from bench.analysis.machines import Environments
from bench.cli import build_parser, main
from bench.commands.run import plan_from_args
from bench.config import Cell, ConfigError, RunConfig
from bench.models import TINY_ARCHS, load_model
from bench.records import read_records

pytest.importorskip("peft")


def _plan(*flags):
    args = build_parser().parse_args(["run", "--loops", "all", "--device", "cpu", "--model", "tiny", *flags])
    return plan_from_args(args)[1]


def test_finetune_is_an_axis_and_lora_flags_go_to_lora_cells_only():
    cells = _plan("--finetune", "full,lora", "--lora-r", "4", "--lora-alpha", "16", "--lora-dropout", "0.1",
                  "--lora-targets", "query,value,key", "--lora-lr", "5e-4", "--batch-size", "8,16")
    assert len(cells) == 2 * 2 * len(loops.LOOPS)
    full = [c for c in cells if c.run.finetune == "full"]
    lora = [c for c in cells if c.run.finetune == "lora"]
    assert len(full) == len(lora) == 2 * len(loops.LOOPS)
    assert all(c.run.lr == 5e-5 and c.run.lora_r is None and c.run.lora_targets is None for c in full)
    assert all(c.run.lr == 5e-4 and c.run.lora_r == 4 and c.run.lora_alpha == 16 and c.run.lora_dropout == 0.1
               and c.run.lora_targets == ("query", "value", "key") for c in lora)
    # The loops of one recipe run next to each other, then the other recipe's, batch size by batch size.
    n = len(loops.LOOPS)
    assert [(c.run.batch_size, c.run.finetune) for c in cells[::n]] == [(8, "full"), (8, "lora"), (16, "full"),
                                                                         (16, "lora")]
    assert len({c.cell_id for c in cells}) == len(cells)


@pytest.mark.parametrize("flags,said", [
    (["--lora-r", "8"], "--lora-r without a LoRA cell"),
    (["--lora-lr", "1e-3", "--finetune", "full"], "--lora-lr without a LoRA cell"),
])
def test_lora_flags_without_a_lora_cell_are_one_line(flags, said, capsys, tmp_path):
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--out", str(tmp_path / "o"),
                 *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [("--lora-r", "0"), ("--lora-r", "2.5"), ("--lora-alpha", "-1"),
                                        ("--lora-alpha", "nan"), ("--lora-dropout", "1"), ("--lora-dropout", "-0.1"),
                                        ("--lora-targets", ""), ("--lora-targets", "query value"),
                                        ("--lora-targets", "1query"), ("--finetune", "qlora"), ("--lora-lr", "0")])
def test_bad_lora_values_are_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "--finetune", "lora", flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_lora_settings_on_a_full_run_config_are_refused():
    with pytest.raises(ConfigError, match="need --finetune lora"):
        RunConfig(lora_r=8).validate()
    with pytest.raises(ConfigError, match="--finetune must be one of"):
        RunConfig(finetune="adapters").validate()


def test_a_full_cell_keeps_the_id_it_had_before_finetune_existed():
    """A folder written before --finetune resumes: its cells' ids are unchanged."""
    cell = Cell("manual", "cpu", "fp32", RunConfig(model="tiny"))
    d = cell.to_dict()
    for key in ("finetune", "lora_r", "lora_alpha", "lora_dropout", "lora_targets"):
        del d["run"][key]
    assert cell.cell_id == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert Cell("manual", "cpu", "fp32", RunConfig(model="tiny", finetune="lora")).cell_id != cell.cell_id


def test_without_peft_lora_is_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--finetune", "full,lora",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[lora]"' in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_the_adapter_is_read_back_from_the_live_model(arch):
    model, _, info = load_model(RunConfig(model=f"tiny-{arch}", finetune="lora"))
    a = info.adapter
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert info.finetune == "lora" and a.method == "lora"
    assert a.trainable_params == info.n_params_trainable == sum(p.numel() for p in trainable)
    assert a.total_params == sum(p.numel() for p in model.parameters())
    assert a.trainable_params / a.total_params < 0.01
    assert (a.r, a.alpha, a.dropout) == (8, 8.0, 0.0)  # PEFT's LoraConfig defaults, read back
    assert a.targets_source == ("bench" if arch in ("distilbert", "modernbert") else "peft")
    assert a.adapted_layers == sum(1 for n, m in model.named_modules() if hasattr(m, "lora_A"))
    # Read from the live model: the modules trained in full are those PEFT wrapped (its config also
    # names "score", which no encoder here has; DistilBERT's pre_classifier ends with "classifier").
    assert a.modules_to_save == (["classifier", "pre_classifier"] if arch == "distilbert" else ["classifier"])
    assert a.target_modules == sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")})
    # The head that runs trains; the adapters' B start at zero (LoRA starts as the base model).
    assert any("classifier" in n and "modules_to_save" in n for n, p in model.named_parameters() if p.requires_grad)
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_the_adapters_draw_is_the_seeds():
    def lora_a(seed):
        model, _, _ = load_model(RunConfig(model="tiny", finetune="lora", seed=seed))
        return [p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n]

    first, again, other = lora_a(3), lora_a(3), lora_a(4)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, other))


def test_given_lora_settings_are_the_ones_in_force():
    _, _, info = load_model(RunConfig(model="tiny", finetune="lora", lora_r=4, lora_alpha=32.0, lora_dropout=0.1,
                                      lora_targets=("query", "key", "value", "dense")))
    a = info.adapter
    assert (a.r, a.alpha, a.dropout, a.scaling) == (4, 32.0, 0.1, 8.0)
    assert a.target_modules == ["dense", "key", "query", "value"] and a.targets_source == "--lora-targets"


@pytest.mark.parametrize("targets,said", [("query,nosuch", "no module of tiny (bert) outside its classifier head"),
                                          ("classifier", "no module of tiny (bert) outside its classifier head"),
                                          ("attention", "names a BertAttention")])
def test_a_target_the_model_lacks_is_refused_before_any_cell(targets, said, glue_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "--loops", "manual", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--finetune", "lora", "--lora-targets", targets, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text()


@pytest.fixture(scope="module")
def lora_sweep(glue_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "o"
    code = main(["run", "--loops", "all", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir,
                 "--finetune", "full,lora", "--lora-lr", "5e-4", "--max-steps", "6", "--train-samples", "64",
                 "--eval-samples", "48", "--timing-warmup", "2", "--parity", "--in-process", "--no-progress",
                 "--out", str(out)])
    return code, out, read_records(out / "results.jsonl")


def test_every_loop_trains_lora_with_the_step_losses_of_manual(lora_sweep):
    code, _, records = lora_sweep
    assert code == 0
    assert len(records) == 2 * len(loops.available()) and all(r.status == "ok" for r in records), \
        [r.reason for r in records]
    for finetune in ("full", "lora"):
        group = [r for r in records if r.run.finetune == finetune]
        manual = next(r for r in group if r.loop == "manual")
        for r in group:
            assert r.step_losses == manual.step_losses, (finetune, r.loop)
            assert r.batch_order_checksum == manual.batch_order_checksum
    full = next(r for r in records if r.loop == "manual" and r.run.finetune == "full")
    lora = next(r for r in records if r.loop == "manual" and r.run.finetune == "lora")
    assert lora.step_losses != full.step_losses  # another recipe: not the same training


def test_records_say_what_trained_and_what_the_optimizer_kept(lora_sweep):
    _, _, records = lora_sweep
    for r in records:
        trained = r.model.n_params_trainable
        steps = sum(g["n_tensors"] for g in r.settings["param_groups"])
        # AdamW: two float32 moments per trained parameter and a float32 step count per tensor.
        assert r.optimizer_state_bytes == 8 * trained + 4 * steps, r.loop
        assert sum(g["n_params"] for g in r.settings["param_groups"]) == trained
        if r.run.finetune == "lora":
            assert r.model.adapter and trained / r.model.adapter.total_params < 0.01
            assert r.settings["lr"] == 5e-4
        else:
            assert r.model.adapter is None and trained == r.model.n_params
            assert r.settings["lr"] == 5e-5
    trainer = [r for r in records if r.loop == "trainer"]
    assert all(r.settings["trainer_label_names"] == ["labels"] for r in trainer)


def test_the_report_compares_lora_with_full_per_loop_from_the_records(lora_sweep):
    from sklearn.metrics import f1_score

    from bench.analysis import cells_of
    from bench.analysis.finetune import finetune_pairs

    _, out, records = lora_sweep
    pairs = finetune_pairs(cells_of(records))
    assert [p.loop for p in pairs] == list(loops.available())
    for p in pairs:
        full = next(r for r in records if r.loop == p.loop and r.run.finetune == "full")
        lora = next(r for r in records if r.loop == p.loop and r.run.finetune == "lora")
        assert p.speed_ratio == pytest.approx(lora.samples_per_s / full.samples_per_s)
        ref = full.eval_predictions.reference
        assert lora.eval_predictions.reference == ref
        expected = (f1_score(ref, lora.eval_predictions.predicted, zero_division=0)
                    - f1_score(ref, full.eval_predictions.predicted, zero_division=0))
        assert p.difference.f1_diff == pytest.approx(expected, abs=1e-12)
        # One seed gives no verdict; the same prediction on every pair is "not told apart" at any count.
        same = lora.eval_predictions.predicted == full.eval_predictions.predicted
        assert p.verdict == ("not told apart" if same else "no verdict")
        assert p.lora.optimizer_state_mib == pytest.approx(lora.optimizer_state_bytes / 2**20)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## LoRA beside full fine-tuning" in report
    assert "- fine-tuning: LoRA r 8, alpha 8, dropout 0 on `query,value` (peft's choice), `classifier` trained" in report
    # The count is of adapted modules (a query and a value per layer), not of the model's layers.
    assert f"(peft's choice; {2 * full.model.num_layers} modules adapted)" in report
    section = report.split("## LoRA beside full fine-tuning")[1].split("\n## ")[0]
    assert sum(line.startswith("| cpu / fp32 | ") for line in section.splitlines()) == len(pairs)


def test_a_full_and_lora_sweep_resumes_and_grows_by_a_loop(glue_dir, tmp_path, capsys):
    """Resume matches each recipe to its own recorded cells: the LoRA cells' learning rate and
    adapter settings are not the full cells', and that is no reason to refuse (it was, for every
    resume of a --finetune full,lora sweep); another LoRA learning rate still is."""
    out = tmp_path / "o"
    base = ["run", "--device", "cpu", "--model", "tiny", "--glue-dir", glue_dir, "--finetune", "full,lora",
            "--max-steps", "2", "--timing-warmup", "1", "--train-samples", "16", "--eval-samples", "16",
            "--in-process", "--no-progress"]
    assert main([*base, "--loops", "manual", "--lora-lr", "5e-4", "--out", str(out)]) == 0
    # The progress lines tell the two recipes apart.
    assert [line.split(": ok")[0] for line in capsys.readouterr().err.splitlines() if ": ok " in line] == \
        ["[1/2] manual/cpu/fp32", "[2/2] manual/cpu/fp32 lora"]
    assert main([*base, "--loops", "manual", "--lora-lr", "5e-4", "--resume", str(out)]) == 0
    assert "already recorded" in capsys.readouterr().err
    assert main([*base, "--loops", "manual,accelerate", "--lora-lr", "5e-4", "--resume", str(out)]) == 0
    records = read_records(out / "results.jsonl")
    assert sorted((r.loop, r.run.finetune, r.run.lr) for r in records) == [
        ("accelerate", "full", 5e-5), ("accelerate", "lora", 5e-4), ("manual", "full", 5e-5), ("manual", "lora", 5e-4)]
    assert all(r.status == "ok" for r in records)
    capsys.readouterr()
    assert main([*base, "--loops", "trainer", "--lora-lr", "1e-3", "--resume", str(out)]) == 2
    assert "run.lr (0.0005 recorded, 0.001 now)" in capsys.readouterr().err
    assert len(read_records(out / "results.jsonl")) == 4  # nothing ran, nothing was rewritten


@pytest.mark.slow
def test_minilm_thirty_steps_full_and_lora_in_every_loop(glue_dir, tmp_path):
    """What a user types first: ten ok cells, LoRA a small fraction of the weights, its step losses
    the same in every loop."""
    out = tmp_path / "o"
    assert main(["run", "--loops", "all", "--finetune", "full,lora", "--model", "minilm-l6", "--max-steps", "30",
                 "--device", "cpu", "--glue-dir", glue_dir, "--parity", "--no-progress", "--out", str(out)]) == 0
    records = read_records(out / "results.jsonl")
    assert len(records) == 10 and all(r.status == "ok" for r in records)
    lora = [r for r in records if r.run.finetune == "lora"]
    assert all(r.model.adapter.trainable_params / r.model.adapter.total_params < 0.01 for r in lora)
    assert all(r.step_losses == lora[0].step_losses for r in lora)


def test_lora_options_round_trip_through_a_config_file(tmp_path, capsys):
    argv = ["run", "--loops", "manual", "--finetune", "full,lora", "--lora-r", "4", "--lora-targets", "query,key",
            "--lora-dropout", "0.1", "--lora-lr", "5e-4"]
    assert main([*argv, "--print-config"]) == 0
    path = tmp_path / "recipe.toml"
    path.write_text(capsys.readouterr().out)
    args = build_parser().parse_args(argv)
    again = main(["run", "--config", str(path), "--print-config"])
    assert again == 0 and capsys.readouterr().out == path.read_text()
    cells = plan_from_args(args)[1]
    assert [c.run.lora_targets for c in cells if c.run.finetune == "lora"] == [("query", "key")]


def test_the_records_table_has_a_column_per_adapter_setting(lora_sweep):
    import bench

    _, out, records = lora_sweep
    frame = bench.load(out)
    lora = frame[frame["run.finetune"] == "lora"]
    full = frame[frame["run.finetune"] == "full"]
    assert set(lora["model.adapter.r"]) == {8} and set(lora["model.adapter.targets_source"]) == {"peft"}
    assert full["model.adapter.r"].isna().all()
    assert list(lora["optimizer_state_mib"]) == [r.optimizer_state_bytes / 2**20 for r in records
                                                 if r.run.finetune == "lora"]


def test_lora_speed_pairs_each_round_of_repeats():
    """--repeats 3 at one seed is three pairs of runs (round by round), not one pair of medians."""
    from bench.analysis import cells_of
    from bench.analysis.finetune import finetune_pairs
    from bench.analysis.verdicts import Kind
    from bench.records import Record
    from tests.test_report import rec

    records = []
    for repeat, (full_sps, lora_sps) in enumerate([(10, 20), (11, 21), (12, 23)]):
        full, lora = rec("manual", sps=full_sps, repeat=repeat), rec("manual", sps=lora_sps, repeat=repeat)
        lora.config["run"] = {**lora.config["run"], "finetune": "lora", "lr": 5e-4}
        lora.cell_id += "-lora"
        records += [Record.from_dict(json.loads(r.to_json())) for r in (full, lora)]
    [pair] = finetune_pairs(cells_of(records))
    assert pair.speed_pairs == sorted([20 / 10, 21 / 11, 23 / 12])
    assert pair.speed_kind is Kind.REAL


def test_a_seed_ok_in_one_recipe_only_is_left_out_of_both_sides():
    """Full ran seeds 1-3, LoRA's seed 3 failed: both sides' F1 are means over seeds 1 and 2, and the
    report names the seed left out, instead of full's mean taking in a seed LoRA never had."""
    from bench.analysis import cells_of
    from bench.analysis.finetune import finetune_pairs
    from bench.records import Record
    from bench.report.finetune import lines
    from tests.test_report import rec

    records = []
    for seed, full_f1, lora_f1 in [(1, 0.80, 0.70), (2, 0.82, 0.72), (3, 0.90, None)]:
        full = rec("manual", f1=full_f1)
        lora = rec("manual", f1=lora_f1 or 0.0, status="ok" if lora_f1 else "failed", reason="" if lora_f1 else "boom")
        for r, finetune, lr in ((full, "full", 5e-5), (lora, "lora", 5e-4)):
            r.config["run"] = {**r.config["run"], "seed": seed, "finetune": finetune, "lr": lr}
            r.cell_id += f"-{finetune}-{seed}"
            records.append(Record.from_dict(json.loads(r.to_json())))
    [pair] = finetune_pairs(cells_of(records))
    assert pair.full.seeds == pair.lora.seeds == 2
    assert pair.full.f1_mean == pytest.approx(0.81) and pair.lora.f1_mean == pytest.approx(0.71)
    assert pair.unpaired == "seed 3 ok in full only"

    class Ctx:
        finetune = [pair]
        environments = Environments.of([])
    [row] = [line for line in lines(Ctx()) if line.startswith("| cpu / fp32 | manual |")]
    assert "(seed 3 ok in full only: left out) |" in row
    assert "0.810 (2 seeds) → 0.710 (2 seeds)" in row


def test_a_loop_at_fewer_seeds_than_the_sweep_is_advised_the_sweeps_seeds_in_code():
    """The committed seed sweep's manual loop at seeds 1, 2, 3 and the Trainer at 1 (its records as
    they stood before the Trainer's other seeds joined): the Trainer's LoRA-against-full line advises
    the seeds the sweep ran (not '--seeds 1,2,3', which it ran), and its command shows as code, not as
    escaped backticks."""
    from pathlib import Path

    from bench.analysis import cells_of
    from bench.analysis.finetune import finetune_pairs
    from bench.report.finetune import lines

    records = read_records(Path(__file__).parent.parent / "reports" / "cpu-minilm-lora-seeds" / "results.jsonl")
    records = [r for r in records if r.loop == "manual" or (r.loop == "trainer" and r.seed == 1)]
    pairs = finetune_pairs(cells_of(records))
    trainer = next(p for p in pairs if p.loop == "trainer")
    assert trainer.verdict == "no verdict"
    assert trainer.why.endswith("each side at the seeds the sweep ran (1, 2, 3; `--resume` with the same `--seeds`))")

    class Ctx:
        finetune = pairs
        environments = Environments.of(records)
    [quality] = [line for line in lines(Ctx()) if line.startswith("Quality: ")]
    assert "\\`" not in quality and "`--resume` with the same `--seeds`" in quality
    assert "`--seeds 1,2,3`" not in quality
