# jsarag: reproduction pipeline for JSA-RAG (joint stochastic approximation for RAG).
#   snakemake --profile profiles/local                          # embedded config.yaml
#   snakemake --profile profiles/local --configfile configs/paper.yaml   # paper-scale (replaces config.yaml)
import copy

from jsarag import InputError
from jsarag.config import validate_config


configfile: "config.yaml"


envvars:
    "PATH",


# A --configfile replaces the embedded config instead of deep-merging into it (a merge would keep
# the default datasets and corpora next to the paper ones).
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
try:
    validate_config(config, source="config")
except InputError as e:
    raise ValueError(f"invalid config: {e}") from None

# Every .smk appends the final outputs of its stage here; rule all collects them.
ALL_TARGETS = []


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/index.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
