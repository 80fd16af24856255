"""The dataset card (README.md) of a distilled folder, rendered from model_card_template.md, with its figures."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import resources
from pathlib import Path

import datasets
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from ..core.io import atomic_path
from ..data.formation import formation_factor_of
from ..data.sources import DIGITS, local_copy
from ..stages.recipe import is_local_path, public_recipe
from ..stages.run_folder import OVERVIEW, RunFolder, configs_entries, grid_name, stage_dataset, stage_files, stage_name

BIBTEX = {
    "pdd": "@inproceedings{chen2024pdd,\n  title={Data Distillation Can Be Like Vodka: Distilling More Times For "
    "Better Quality},\n  author={Chen, Xuxi and Yang, Yu and Wang, Zhangyang and Mirzasoleiman, Baharan},\n"
    "  booktitle={ICLR},\n  year={2024}\n}",
    "seqmatch": "@inproceedings{du2023seqmatch,\n  title={Sequential Subset Matching for Dataset Distillation},\n"
    "  author={Du, Jiawei and Shi, Qin and Zhou, Joey Tianyi},\n  booktitle={NeurIPS},\n  year={2023}\n}",
    "boost": "@inproceedings{feng2024ratbptt,\n  title={Embarrassingly Simple Dataset Distillation},\n"
    "  author={Feng, Yunzhen and Vedantam, Ramakrishna and Kempe, Julia},\n  booktitle={ICLR},\n  year={2024}\n}",
    "mtt": "@inproceedings{cazenavette2022mtt,\n  title={Dataset Distillation by Matching Training Trajectories},\n"
    "  author={Cazenavette, George and Wang, Tongzhou and Torralba, Antonio and Efros, Alexei A. and "
    "Zhu, Jun-Yan},\n  booktitle={CVPR},\n  year={2022}\n}",
    "datm": "@inproceedings{guo2024datm,\n  title={Towards Lossless Dataset Distillation via Difficulty-Aligned "
    "Trajectory Matching},\n  author={Guo, Ziyao and Wang, Kai and Cazenavette, George and Li, Hui and Zhang, Kaipeng "
    "and You, Yang},\n  booktitle={ICLR},\n  year={2024}\n}",
    "idc": "@inproceedings{kim2022idc,\n  title={Dataset Condensation via Efficient Synthetic-Data Parameterization},"
    "\n  author={Kim, Jang-Hyun and Kim, Jinuk and Oh, Seong Joon and Yun, Sangdoo and Song, Hwanjun and Jeong, "
    "Joonhyun and Ha, Jung-Woo and Song, Hyun Oh},\n  booktitle={ICML},\n  year={2022}\n}",
    "dsa": "@inproceedings{zhao2021dsa,\n  title={Dataset Condensation with Differentiable Siamese Augmentation},\n"
    "  author={Zhao, Bo and Bilen, Hakan},\n  booktitle={ICML},\n  year={2021}\n}",
}
METHOD_TITLES = {
    "mtt": "MTT (trajectory matching)",
    "datm": "DATM (difficulty-aligned trajectory matching, learned soft labels)",
    "random": "random real selection",
    "herding": "herding",
    "kcenter": "k-center",
    "idc": "IDC (gradient matching, multi-formation)",
}


@lru_cache(maxsize=8)
def source_license(path: str) -> str | None:
    """The license declared by the source dataset's card (local folder, a Hub id's local copy under
    HF_CONDENSE_DATASETS, or the Hub); None when unknown."""
    if path == DIGITS:
        return "cc-by-4.0"  # the UCI optical digits set bundled with scikit-learn
    try:
        local = (local_copy(path) or Path(path)) / "README.md"
        card = DatasetCard.load(local) if local.is_file() else DatasetCard.load(path, repo_type="dataset")
    except Exception:  # offline, no card, or a malformed one: the card says nothing rather than guessing
        return None
    lic = card.data.get("license")
    return lic if isinstance(lic, str) or lic is None else ", ".join(lic)


def project_url() -> str | None:
    """The project URL the installed package declares (pyproject `[project.urls]`); None when it declares none."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("hf_condense").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return urls[0].split(",", 1)[1].strip() if urls else None


def source_reference(path: str) -> tuple[str, str | None, list[str] | None]:
    """(how the card names the source, its page when one exists, `source_datasets`): a Hub id links its Hub page and
    is listed; a local folder is named by its folder name only and the bundled digits by what they are."""
    if path == DIGITS:
        return "scikit-learn's bundled 8x8 digits (UCI optical digits)", None, None
    if is_local_path(path):
        return f"a local copy named {Path(path).name}", None, None
    return path, f"https://huggingface.co/datasets/{path}", [path]


def dataset_infos(folder: Path, stage_metas: list[dict]) -> datasets.info.DatasetInfosDict:
    """Features and split sizes of every stage config, read from the stage files themselves (`dataset_info`)."""
    infos = datasets.info.DatasetInfosDict()
    for m in stage_metas:
        stage_dir = folder / stage_name(m["stage"])
        ds = stage_dataset(stage_dir, m)
        size = ds.data.nbytes
        splits = datasets.SplitDict()
        splits.add(datasets.SplitInfo(name="train", num_bytes=size, num_examples=len(ds)))
        download = sum(f.stat().st_size for f in stage_files(stage_dir, m))
        infos[stage_name(m["stage"])] = datasets.DatasetInfo(
            features=ds.features, splits=splits, download_size=download, dataset_size=size
        )
    return infos


def template_path() -> str:
    return str(resources.files("hf_condense") / "templates" / "model_card_template.md")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _pct(score) -> str:
    return f"{100 * score[0]:.2f} ± {100 * score[1]:.2f}" if score else "–"


def _pts(value) -> str:
    return f"{100 * value:+.2f}" if value is not None else "–"


def _at(values: list | None, i: int):
    return values[i] if values and i < len(values) else None


def render_card(
    folder: str | Path,
    recipe,
    stage_metas: list[dict],
    results: dict | None,
    preprocessor,
    class_names: list[str],
    image_shape: tuple,
    versions: dict,
    repo_id: str | None = None,
) -> str:
    """Render and write README.md for `folder`; returns the text."""
    run = RunFolder(folder)
    stages = [m["stage"] for m in stage_metas]
    results = results or {}
    accs, rand = results.get("distilled", []), results.get("random_real", [])
    scores, models = results.get("scores") or [], results.get("models") or {}
    src = recipe.dataset.path
    method = recipe.method.name
    scheme = recipe.stages.scheme if recipe.stages.count > 1 else None
    rows, cum = [], 0
    for i, m in enumerate(stage_metas):
        cum += m["ipc"]
        grid = grid_name(m["stage"])
        rows.append(
            {
                "name": stage_name(m["stage"]),
                "ipc": m["ipc"],
                "ipc_cum": cum,
                "num_images": m["num_images"],
                "lr": f"{m['lr']:.4g}",
                "epochs": m["epochs"],
                "acc": _pct(_at(accs, i)),
                "random": _pct(_at(rand, i)),
                "ior": _pts((_at(scores, i) or {}).get("ior")),
                "hlr": _pts((_at(scores, i) or {}).get("hlr")),
                "lrs": f"{lrs:.3f}" if (lrs := (_at(scores, i) or {}).get("lrs")) is not None else "–",
                "models": [
                    f"{_pct(_at(r.get('distilled'), i))} ({_pts(_at(r.get('ior'), i))})" for r in models.values()
                ],
                "grid": grid if run.grid(m["stage"]).exists() else None,
            }
        )
    total = sum(m["num_images"] for m in stage_metas)
    source_name, source_url, source_datasets = source_reference(src)
    data = DatasetCardData(
        license=source_license(src),
        annotations_creators=["machine-generated"],
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        size_categories=_size_category(total),
        source_datasets=source_datasets,
        pretty_name=f"{Path(src).name} distilled ({method}{', ' + scheme if scheme else ''})",
        tags=["dataset-distillation", "hf-condense", method] + ([scheme] if scheme else []),
        configs=configs_entries(stage_metas),
        hf_condense={
            "method": method,
            "scheme": scheme or "single",
            "stages": stage_metas_short(stage_metas),
            "results": results,
            "recipe_hash": recipe.distill_hash(),
        },
    )
    infos = dataset_infos(run.path, stage_metas)
    infos.to_dataset_card_data(data)
    soft = any("soft_label" in info.features for info in infos.values())
    card = DatasetCard.from_template(
        data,
        template_path=template_path(),
        pretty_name=data.pretty_name,
        source_name=source_name,
        source_url=source_url,
        project_url=project_url(),
        class_names=", ".join(class_names),
        soft_labels=soft,
        model_names=list(models),
        has_scores=bool(scores),
        has_hlr=any(s.get("hlr") is not None for s in scores),
        total_images=total,
        ipc_total=cum,
        num_classes=len(class_names),
        num_stages=len(stage_metas),
        method_title=METHOD_TITLES.get(method, method) + (f" with {scheme.upper()}" if scheme else ""),
        image_shape=" x ".join(str(s) for s in image_shape),
        input_space=preprocessor.describe(),
        formation_factor=max((formation_factor_of(m) for m in stage_metas), default=1),
        stages=rows,
        eval_runs=recipe.evaluation.runs,
        model_name=recipe.model.name,
        test_split=recipe.dataset.test_split,
        eval_mode=recipe.evaluation.mode,
        whole_data=_pct(results.get("whole_data")) if results.get("whole_data") else None,
        has_plot=run.curve.exists(),
        overview=OVERVIEW if run.overview.exists() else None,
        repo_id=repo_id or run.path.name,
        last_stage=stage_name(stages[-1]) if stages else "stage_1",
        recipe_yaml=yaml.safe_dump(public_recipe(recipe.public_dict()), sort_keys=False).strip(),
        versions=", ".join(f"{k} {v}" for k, v in versions.items()) + f", Python {platform.python_version()}",
        bibtex=[BIBTEX[k] for k in (scheme, method, "dsa") if k in BIBTEX],
        **experts_reference(getattr(recipe.method, "experts", None)),
    )
    text = str(card)
    with atomic_path(run.card) as tmp:
        tmp.write_text(text)
    return text


def experts_reference(source: str | None) -> dict:
    """The shared experts a run used (`method.experts`), with the link of a Hub repo at its revision."""
    if not source:
        return {}
    if is_local_path(source):  # a local folder: its name only, as the published recipe has it
        return {"experts": Path(source).name, "experts_url": None}
    repo, _, revision = source.partition("@")
    return {
        "experts": source,
        "experts_url": f"https://huggingface.co/{repo}" + (f"/tree/{revision}" if revision else ""),
    }


def stage_metas_short(stage_metas: list[dict]) -> list[dict]:
    keep = ("stage", "ipc", "num_images", "lr", "epochs", "formation_factor")
    return [{k: m[k] for k in keep if k in m} for m in stage_metas]
