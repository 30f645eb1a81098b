# rlhf-recipes: the stages of ChatGPT training, one make target each.
#   make all                 the whole pipeline on the embedded default (CPU, minutes)
#   make test                the test suite
#   make all MODEL=tiny-zh   the story in Chinese (MODEL=tiny-bilingual: one model answering in both languages)
#   make pretrain MODEL=tiny HW=cpu ARGS="--num_train_epochs 1"
#   make sft HW=deepspeed_zero2 PROCS=2    (accelerate_configs/deepspeed_zero2.yaml, 2 processes)
#   make sweep SEEDS=5 FROM=sft             (after make all: the story across seeds)
#   make headtohead SEEDS=5                 (PPO, DPO, RLOO, GRPO and best-of-n across seeds, in English and Chinese)
#   make chat STAGE=sft                     (after make all: talk to a stage; make serve: all of them, in the browser)
#   make eval                               (after make all: lm-evaluation-harness over every stage, offline)
#   make bench HW=single_gpu ARGS="--bf16 true --shape gpt2-124m"
SHELL := /bin/bash
.NOTPARALLEL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
MODEL ?= tiny
HW ?= cpu
PROCS ?=
ARGS ?=
SEEDS ?= 5
FROM ?= sft
METHODS ?= ppo
WORLDS ?= tiny tiny-zh
STAGE ?= ppo
PORT ?=

BIN := $(VENV)/bin
PARITY_VENV ?= .venv-ppo-parity
UPGRADE_VENV ?= .venv-upgrade
# chat.yaml / serve.yaml: the model's own (or, in a folder with a base in recipe.yaml, the base's on its roots),
# else the tiny one's rows over outputs/MODEL
TALK = $(if $(or $(wildcard $(RECIPE)/$(1).yaml),$(shell grep -s '^base:' $(RECIPE)/recipe.yaml)),$(RECIPE)/$(1).yaml,recipes/tiny/$(1).yaml --outputs_dir outputs/$(MODEL))
# DeepSpeed's compiled CPU ops live with the venv: two venvs sharing ~/.cache/torch_extensions rebuild
# each other's ops (~1 min each time)
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions
RECIPE := recipes/$(MODEL)
# uv installs requirements.txt's pins ~3x faster than pip. It does not read pip's configuration, so the package
# indexes and wheel folders pip is set up with (pip.conf, PIP_* variables) are handed to it; with several
# indexes it picks a pin from any of them, as pip does. DeepSpeed compiles its CPU ops (CPU Adam) when a run
# first needs one (~1 min, once per venv), not at install. The packages' bytecode is compiled at install, as pip
# does and uv does not by default: where PYTHONDONTWRITEBYTECODE is set, every interpreter would compile each
# module it imports from source again (a training stage's ~4,000: 16.8 s to start instead of 7.6 s).
PIP_SOURCES = $$(for url in $$($(BIN)/pip config get global.index-url 2>/dev/null); do echo --index-url $$url; done; \
  for url in $$($(BIN)/pip config get global.extra-index-url 2>/dev/null) $${PIP_EXTRA_INDEX_URL:-}; do echo --extra-index-url $$url; done; \
  for dir in $${PIP_FIND_LINKS:-$$($(BIN)/pip config get global.find-links 2>/dev/null)}; do echo --find-links $$dir; done)
UV_PIP = $(BIN)/uv pip install --python $(BIN)/python --index-strategy unsafe-best-match $(PIP_SOURCES)
# a stage's command, built by the one function the sweep, the bench and the tests use too (it checks MODEL and HW)
STAGE_CMD = $(BIN)/python -m rlhf_recipes.stages.command $(1) --model $(MODEL) --hw $(HW) $(if $(PROCS),--procs $(PROCS))
STAGE_RUN = $(STAGE_CMD) -- $(ARGS)

.PHONY: help install data tokenizer pretrain sft compare reward ppo report eval all dpo rloo grpo methods sweep headtohead chat serve dashboard bench gpu-check ppo-parity upgrade-check test test-fast lint format clean

help: ## List the targets
	@echo "Usage: make <target> [MODEL=$(MODEL)] [HW=$(HW)] [PROCS=N] [ARGS='--key value ...']"
	@echo "  MODEL: $$(ls recipes/*/recipe.yaml | xargs -n1 dirname | xargs -n1 basename | tr '\n' ' ')"
	@echo "  HW:    $$(ls accelerate_configs/*.yaml | xargs -n1 basename | sed 's/.yaml//' | tr '\n' ' ')"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create .venv: the pinned requirements, then the rlhf_recipes core (editable)

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $$(grep -E '^uv==' requirements.txt)
	@echo "uv pip install -r requirements.txt, then -e ., with pip's indexes:" $(PIP_SOURCES)
	@$(UV_PIP) --compile-bytecode -r requirements.txt
	@$(UV_PIP) --quiet --no-deps --no-build-isolation -e .
	touch $@

data: install ## Stage 0: generate the embedded world's datasets into data/
	$(call STAGE_RUN,data)

tokenizer: install ## Stage 1a: train the BPE tokenizer -> outputs/MODEL/tokenizer
	$(call STAGE_RUN,tokenizer)

pretrain: install ## Stage 1: pretrain the base model -> outputs/MODEL/pretrain
	$(call STAGE_RUN,pretrain)

sft: install ## Stage 2: supervised fine-tuning -> outputs/MODEL/sft
	$(call STAGE_RUN,sft)

compare: install ## Stage 3a: SFT answers ranked by the gold labeler -> outputs/MODEL/compare
	$(call STAGE_RUN,compare)

reward: install ## Stage 3: reward model on the ranked pairs -> outputs/MODEL/reward
	$(call STAGE_RUN,reward)

ppo: install ## Stage 4: PPO against the reward model -> outputs/MODEL/ppo
	$(call STAGE_RUN,ppo)

report: install ## The stage-by-stage report -> outputs/MODEL/report/report.md
	$(call STAGE_RUN,report)

eval: install ## After `make all`: lm-evaluation-harness over every stage's model (STAGE=sft: one) -> outputs/MODEL/eval/eval.md
	$(call STAGE_RUN,eval) $(if $(filter command line environment,$(origin STAGE)),--stage $(STAGE))

all: install ## Every stage and the report, on the embedded default (HW=cpu: in one process, the imports paid once)
	$(BIN)/python -m rlhf_recipes.stages.pipeline --model $(MODEL) --hw $(HW) $(if $(PROCS),--procs $(PROCS)) -- $(ARGS)

dpo: install ## After PPO: DPO from the SFT model on the compared pairs -> outputs/MODEL/dpo
	$(call STAGE_RUN,dpo)

rloo: install ## After PPO: RLOO from the SFT model against the reward model -> outputs/MODEL/rloo
	$(call STAGE_RUN,rloo)

grpo: install ## After PPO: GRPO from the SFT model against the reward model -> outputs/MODEL/grpo
	$(call STAGE_RUN,grpo)

methods: dpo rloo grpo ## After `make all`: DPO, RLOO, GRPO and the report of every method -> outputs/MODEL/methods
	$(call STAGE_CMD,methods)  # ARGS went to the training stages above; the report takes none of theirs

sweep: install ## After `make all`: stages from FROM=sft (or pretrain) once per seed, SEEDS=5, METHODS=ppo (or all) -> outputs/MODEL/sweep
	$(BIN)/python recipes/sweep.py --model $(MODEL) --seeds $(SEEDS) --from_stage $(FROM) --hw $(HW) \
		--methods $(METHODS) $(if $(PROCS),--procs $(PROCS)) $(ARGS)

headtohead: install ## PPO, DPO, RLOO, GRPO, best-of-n from each seed's SFT and RM, SEEDS=5, in WORLDS -> outputs/WORLD/headtohead
	for world in $(WORLDS); do \
	  test -f outputs/$$world/pretrain/metrics.json || $(MAKE) data tokenizer pretrain MODEL=$$world || exit 1; \
	  $(BIN)/python recipes/sweep.py --model $$world --seeds $(SEEDS) --from_stage $(FROM) --hw $(HW) \
	    --methods all --report_overopt true --output_dir outputs/$$world/headtohead \
	    $(if $(PROCS),--procs $(PROCS)) $(ARGS) || exit 1; \
	done

chat: install ## After `make all`: talk to a stage in the terminal, STAGE=ppo (any stage, or a model folder)
	$(BIN)/python recipes/chat.py --config $(call TALK,chat) --stage $(STAGE) $(ARGS)

serve: install ## After `make all`: every stage side by side in the browser, and OpenAI's API under /v1 -> http://127.0.0.1:PORT (8000)
	$(BIN)/python recipes/serve.py --config $(call TALK,serve) --port $(or $(PORT),8000) $(ARGS)

dashboard: install ## Every stage's training curves in TensorBoard -> http://127.0.0.1:PORT (6006)
	$(BIN)/tensorboard --logdir outputs/$(MODEL) --host 127.0.0.1 --port $(or $(PORT),6006)

bench: install ## After `make all`: every stage vs a plain PyTorch loop, PPO's update by phase -> outputs/bench
	$(call STAGE_RUN,bench)

gpu-check: install ## On a CUDA GPU, in 8 min at most: bf16 SFT and PPO, QLoRA, ZeRO-2, the bench -> outputs/gpu-check
	$(BIN)/python recipes/gpu_check.py $(ARGS)

test: install ## Run the whole test suite (tiny real runs, offline), one worker per core
	$(BIN)/python -m pytest -n auto --dist loadfile

test-fast: install ## The inner loop, under a minute: config, world, labeler, outputs and CLI-error tests
	$(BIN)/python -m pytest -m "not slow"

ppo-parity: install ## Our PPO vs TRL 1.12's, update by update, and timed (after `make all`), in .venv-ppo-parity -> outputs/ppo-parity
	test -f $(PARITY_VENV)/.installed || { $(PYTHON) -m venv $(PARITY_VENV) && \
	  $(PARITY_VENV)/bin/pip install --quiet -r tests/maintenance/ppo-parity-requirements.txt && \
	  $(PARITY_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e . && touch $(PARITY_VENV)/.installed; }
	mkdir -p outputs/ppo-parity && rm -f outputs/ppo-parity/parity.md
	PARITY_TABLE=outputs/ppo-parity/parity.md $(PARITY_VENV)/bin/python -m pytest tests/test_ppo_parity.py -p no:cacheprovider
	$(PARITY_VENV)/bin/python tests/maintenance/ppo_timing.py --model $(MODEL) --output_dir outputs/ppo-parity

upgrade-check: ## Newest release of every dependency in .venv-upgrade, what moved, then make test-fast there
	rm -rf $(UPGRADE_VENV) && $(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/pip install --quiet --upgrade pip
	sed -E 's/==[^ ;#]+//' requirements.txt | grep -vE '^[[:space:]]*(#|$$)' > $(UPGRADE_VENV)/newest.txt
	$(UPGRADE_VENV)/bin/pip install --quiet -r $(UPGRADE_VENV)/newest.txt
	$(UPGRADE_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e . && touch $(UPGRADE_VENV)/.installed
	$(UPGRADE_VENV)/bin/python tests/maintenance/what_moved.py requirements.txt
	$(MAKE) test-fast VENV=$(UPGRADE_VENV)

lint: install ## ruff check + ruff format --check (settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Fix what ruff can: imports, formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove generated data and outputs (keeps .venv)
	rm -rf data outputs
