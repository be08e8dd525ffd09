# jsarag: reproduction pipeline for JSA-RAG (joint stochastic approximation for RAG).
#   snakemake --cores all                                        # embedded config.yaml
#   snakemake --profile profiles/local --configfile configs/paper.yaml   # paper scale (replaces config.yaml)
# One .smk per stage in rules/, each calling `python -m jsarag.<stage>`; every path comes from
# jsarag/layout.py and every job's config section from jsarag/config.py.
import copy

from jsarag import InputError
from jsarag.config import read_yaml, validate_config


configfile: "config.yaml"


envvars:
    "PATH",


# A --configfile replaces the embedded config instead of deep-merging into it (a merge would keep
# the default datasets and corpora next to the paper ones).
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
try:
    # Snakemake parsed the --configfile already, keeping the last of duplicate keys: re-read it with
    # the project's loader, which refuses them with file:line
    for _f in workflow.overwrite_configfiles or []:
        read_yaml(_f)
    validate_config(config, source=", ".join(map(str, workflow.overwrite_configfiles or ["config.yaml"])))
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
