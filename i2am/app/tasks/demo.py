"""`i2am demo`: the whole pipeline offline on CPU, on the toy world, ending in report.html and a claims table.

By default the models are the pretrained toy checkpoints shipped in ``i2am/pretrained/toy/`` (custom, refined,
control, and with ``demo.study=true`` custom's intermediate checkpoints, the study set) and the train stages are
skipped; ``demo.from_scratch=true`` trains them first with the same recipes (``conf/experiment/toy_pretrain_*.yaml``)
at ``demo.budget``.

Stages (each an ordinary task run in-process through Hydra's compose API, each in its own folder of the demo's run
directory, each skipped when a restarted demo finds it finished):
  train/custom    custom-toy, MSE only (keeps intermediate checkpoints)
  train/refined   continued from custom with the paper's attention losses (CWG, TV, DCML)
  train/control   the positive control: MSE + cross-entropy of the loss layer's G2R attention against the toy world's
                  true correspondence (toy-only supervision; docs/toy_world.md)
  attribute/<m>   untrained, custom-step<k> (demo.study), custom, refined, control: R2G and G2R families, SRAM, IMACS,
                  ground-truth localisation with its baselines and the attention entropy
  (evaluate)      quality of each attribute run with random-conv features (fid_randconv, kid_randconv; not Inception)
  correlation/    IMACS vs quality across every attributed checkpoint (exploratory); the claim is tested over the
                  checkpoints of one run (custom's), and reads "insufficient n" below 10 of them
  report.html, claims.json, claims.md
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from i2am.adapters import create_model
from i2am.app.tasks import attribute, evaluate, train
from i2am.app.tasks.common import config_dir, quoted, run_dir
from i2am.evaluation.correlation import correlate_runs, correlation_table
from i2am.pretrained import toy_checkpoint
from i2am.pretrained.study import study_names
from i2am.report import claims_markdown, write_claims, write_report
from i2am.report.faithfulness_claims import faithfulness_claims
from i2am.report.tables import markdown_table
from i2am.report.toy_claims import toy_claims
from i2am.runs import RunDir

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("imacs_g", "imacs_r", "fid_randconv", "kid_randconv", "ssim", "loc_err", "loc_err_bbox_baseline",
                "loc_err_centre_prior", "loc_err_chance_baseline", "loc_pointing", "attn_entropy", "attn_max_prob",
                "r2g_mass_in_region")
NOTES = (
    ("Toy world, CPU budget: the models are tiny and trained for minutes; the images are far from realistic. This is "
     "a pipeline demo whose positive control was taught its correspondence (docs/toy_world.md), not a reproduction "
     "of the paper's numbers."),
    ("fid_randconv / kid_randconv use a small fixed random-conv feature network (toy only): they are not Inception "
     "FID/KID and are not comparable with the paper's."),
    ("Localisation is measured against the toy world's ground-truth correspondence at the SRAM layer, with the "
     "chance (random maps), centre-prior and bounding-box-mapping baselines, paired per sample; the attention "
     "entropy is always shown, so a collapse of the attention cannot pass for localisation."),
)


@contextmanager
def hydra_context():
    """Compose other tasks' configs: reuse the running Hydra app (``i2am demo``), or start one on conf/."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


class Demo:
    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg, self.out = cfg, out_dir
        self.budget = cfg.demo.quick_budget if cfg.demo.quick else cfg.demo.budget
        self.data_dir = Path(cfg.paths.data_dir).resolve()
        self.common = [f"paths.data_dir={quoted(self.data_dir)}", f"seed={cfg.seed}",
                       f"model={cfg.demo.model}", f"data={cfg.demo.data}", "trainer.enable_progress_bar=false"]
        self.sram_layer = create_model(cfg.demo.model, device="meta").decoder_layer_name(cfg.demo.loss_layer)

    # ---- stages ------------------------------------------------------------------------------------------------
    def train(self, label: str, attention_loss: str, steps: int, init_from: Path | None = None,
              every: int | None = None, extra: tuple[str, ...] = ()) -> Path:
        out = self.out / "train" / label
        if RunDir(out).is_finished():
            log.info("demo: %s already trained (%s)", label, out)
            return out
        overrides = self.common + [f"experiment=toy_pretrain_{label}", f"run_dir={quoted(out)}",
                                   f"attention_loss={attention_loss}",
                                   f"trainer.max_steps={steps}", f"optimizer.lr={self.cfg.demo.lr}",
                                   f"data.batch_size={self.cfg.demo.batch_size}",
                                   f"checkpoint.every_n_steps={every or steps}",
                                   f"checkpoint.keep_all={every is not None}",
                                   f"attention_loss.layer={self.cfg.demo.loss_layer}", *extra]
        if init_from is not None:
            overrides.append(f"init_from={quoted(init_from)}")
        log.info("demo: train %s (%s, %d steps)", label, attention_loss, steps)
        train.run(compose(config_name="train", overrides=overrides))
        return out

    def attribute(self, label: str, checkpoint: Path | None, split: str = "test") -> Path:
        out = self.out / "attribute" / label
        overrides = self.common + [f"data.split={split}", f"run_dir={quoted(out)}",
                                   f"data.limit={self.budget.num_samples}",
                                   f"sampler.num_steps={self.budget.num_steps}",
                                   f"sampler.guidance={self.cfg.demo.guidance}", "num_figures=0",
                                   f"capture.sram_layers=[{self.sram_layer}]",
                                   f"model.checkpoint={quoted(checkpoint) if checkpoint else 'null'}"]
        if label in self.cfg.demo.get("checks", {}).get("models", ()):
            overrides += list(self.cfg.demo.checks.overrides)
            overrides += [f"evaluators.{check}.samples={self.cfg.demo.checks.samples}"
                          for check in ("faithfulness", "randomization")]
            overrides += list(self.cfg.demo.checks.quick_overrides) if self.cfg.demo.quick else []
        log.info("demo: attribute %s", label)
        attribute.run(compose(config_name="attribute", overrides=overrides))
        evaluate.run(compose(config_name="evaluate",
                             overrides=[f"run_dir={quoted(out)}", "evaluator@quality=quality_toy"]))
        return out

    # ---- the whole demo -----------------------------------------------------------------------------------------
    def trained_checkpoints(self) -> tuple[dict[str, Path], dict[str, Path]]:
        """({custom, refined, control} -> checkpoint, {custom-step<N> -> intermediate checkpoint}): the shipped
        toy checkpoints, or (``demo.from_scratch``) those of the demo's own train stages. The intermediate ones only
        with ``demo.study``."""
        study = self.cfg.demo.get("study", False)
        if not self.cfg.demo.from_scratch:
            shipped = self.cfg.demo.pretrained
            final = {label: toy_checkpoint(shipped[label]) for label in ("custom", "refined", "control")}
            names = study_names() if shipped.get("intermediate") is None else shipped.intermediate
            return final, {name: toy_checkpoint(name) for name in names} if study else {}
        b = self.budget
        custom = self.train("custom", "none", b.custom, every=b.checkpoint_every)
        refined = self.train("refined", self.cfg.demo.refined_loss, b.refined, init_from=last(custom))
        control = self.train("control", "correspondence", b.control,
                             extra=(f"attention_loss.correspondence_weight={self.cfg.demo.control_weight}",))
        final = {"custom": last(custom), "refined": last(refined), "control": last(control)}
        kept = intermediate_checkpoints(custom) if study else []
        return final, {"custom-" + ckpt.stem.replace("=", ""): ckpt for ckpt in kept}

    def run(self) -> dict:
        final, intermediate = self.trained_checkpoints()
        runs = {"untrained": self.attribute("untrained", None)}
        for label, ckpt in intermediate.items():
            runs[label] = self.attribute(label, ckpt)
        for label, ckpt in final.items():
            runs[label] = self.attribute(label, ckpt)
        control_train = self.attribute("control-train", final["control"], split="train")
        metrics = {label: RunDir(path).read_metrics()
                   for label, path in {**runs, "control-train": control_train}.items()}
        correlate_runs(self.out / "correlation", run_dirs=list(runs.values()), x_keys=["imacs_g", "imacs_r"],
                       y_keys=list(self.cfg.demo.correlation_y_keys), n_bootstrap=1000, seed=self.cfg.seed)
        one_run = [label for label in runs if label == "custom" or label.startswith("custom-")]
        one_run_table = correlation_table([metrics[label] for label in one_run], ["imacs_g"],
                                          list(self.cfg.demo.correlation_y_keys), n_bootstrap=1000,
                                          seed=self.cfg.seed)
        samples = {label: {r["sample_id"]: r for r in RunDir(runs[label]).sample_records()}
                   for label in ("custom", "refined")}
        claims = (toy_claims(metrics, one_run_table, n_correlated=len(one_run), samples=samples)
                  + faithfulness_claims(metrics, self.cfg.demo.get("claims")))
        write_claims(self.out / "claims.json", claims)
        summary_md = summary_markdown(metrics)
        (self.out / "claims.md").write_text(claims_markdown(claims) + "\n\n" + summary_md + "\n")
        scatter = [(p.stem, p) for p in RunDir(self.out / "correlation").figures()]
        shown = {k: v for k, v in runs.items() if k in ("untrained", "custom", "refined", "control")}
        shown["control-train"] = control_train
        report = write_report(shown, out_path=self.out / "report.html", title="i2am demo (toy world, CPU)",
                              summary=self.summary(runs), claims=claims, scatter=scatter,
                              num_samples=self.cfg.demo.report_samples, notes=NOTES)
        print("\n" + claims_markdown(claims) + "\n\n" + summary_md + f"\n\nreport: {report}\n")
        result = {f"{label}/{key}": metrics[label][key] for label in shown for key in SUMMARY_KEYS
                  if isinstance(metrics[label].get(key), (int, float))}
        result |= {"claims_held": sum(c.held is True for c in claims), "claims_total": len(claims),
                   "report": str(report)}
        RunDir(self.out).write_metrics(result)
        return result

    def summary(self, runs: dict[str, Path]) -> dict[str, str]:
        b = self.budget
        if self.cfg.demo.from_scratch:
            steps = (f"trained here: custom {b.custom} (MSE), refined +{b.refined} ({self.cfg.demo.refined_loss}), "
                     f"control {b.control} (MSE + correspondence CE)")
        else:
            steps = ("shipped toy checkpoints (i2am/pretrained/toy/*.json: steps, command, held-out SSIM): "
                     + ", ".join(f"{k} = {v}" for k, v in self.cfg.demo.pretrained.items() if k != "intermediate"))
        return {"budget": "quick (token budget for CI: claims are not meaningful)" if self.cfg.demo.quick else "full",
                "model": self.cfg.demo.model, "data": f"{self.cfg.demo.data} under {self.data_dir}",
                "training steps": steps,
                "optimiser": f"AdamW lr {self.cfg.demo.lr}, batch {self.cfg.demo.batch_size}, Min-SNR-5; EMA for "
                             "the control only (conf/experiment/toy_pretrain_*.yaml)",
                "loss / SRAM layer": f"decoder layer {self.cfg.demo.loss_layer} ({self.sram_layer}); control "
                                     f"correspondence weight {self.cfg.demo.control_weight}",
                "attribution": f"{b.num_samples} test samples (control also on {b.num_samples} training samples), "
                               f"DDIM {b.num_steps} steps, guidance {self.cfg.demo.guidance}",
                "attributed checkpoints": ", ".join(runs), "demo folder": str(self.out)}


def last(train_dir: Path) -> Path:
    path = RunDir(train_dir).last_checkpoint()
    if path is None:
        raise FileNotFoundError(f"demo: training run {train_dir} finished without "
                                f"{RunDir(train_dir).last_checkpoint_file}")
    return path


def intermediate_checkpoints(train_dir: Path) -> list[Path]:
    """``step=<N>.ckpt`` files kept by a training run before its final step (whose state is last.ckpt), in order."""
    run = RunDir(train_dir)
    final = run.read_metrics()["global_step"]
    return [path for step, path in run.step_checkpoints().items() if step < final]


def summary_markdown(metrics: dict[str, dict]) -> str:
    keys = [k for k in SUMMARY_KEYS if any(k in m for m in metrics.values())]
    rows = [[label] + [f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "–" for k in keys]
            for label, m in metrics.items()]
    return markdown_table(["model", *keys], rows)


def run(cfg: DictConfig) -> dict:
    run = run_dir(cfg)
    run.save_config(cfg)
    log.info("demo (%s budget) -> %s", "quick" if cfg.demo.quick else "full", run.path)
    with hydra_context():
        return Demo(cfg, run.path).run()

