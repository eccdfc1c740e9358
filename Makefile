# Shoplab: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODE ?= netns
# Where the lab runs: `local` (this machine, or its systemd lab-host container) or `vm` (the lab VMs
# that `make vm` boots, listed in inventory/vms.yml). VMS: how many lab VMs `make vm` boots, and how many
# of them one lab spans (make up LAB=vm VMS=3: one lab over three VMs; VMS=1: a lab in each VM).
LAB ?= local
VMS ?= 1
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

ifneq ($(words $(LAB)) $(filter local vm,$(LAB)),1 $(LAB))
$(error LAB must be 'local' or 'vm', got '$(LAB)')
endif
VM_INVENTORY := inventory/vms.yml
# LAB=vm: every playbook that acts on the lab hosts gets the VMs' inventory, and needs it to exist.
LAB_INVENTORY := $(if $(filter vm,$(LAB)),-i $(VM_INVENTORY) -e shoplab_lab_span=$(VMS))
LAB_READY := $(if $(filter vm,$(LAB)),vm-inventory)
# What a deploy needs first: this machine's set-up (local) or running lab VMs (vm).
LAB_HOST := $(if $(filter vm,$(LAB)),vm-inventory,host-up)

.PHONY: help host-up host-test venv wheelhouse lint docs test test-unit test-bootstrap test-services test-bench test-prepare test-netns test-exercises test-docker test-vm test-vm-docker test-vm-deploy test-multihost test-multihost-docker up down run-local bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt services/pyproject.toml
	scripts/bootstrap-host venv
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e 'services[test,alternatives]'
	touch $@

venv: $(VENV)/.installed ## Create the virtualenv with pinned tools

# What this machine lacks (apt packages, a running Docker engine): scripts/bootstrap-host says what it installs.
host-up: ## Install and start what `make up` needs on this machine
	scripts/bootstrap-host up

host-test: ## Install and start what `make test` needs on this machine
	scripts/bootstrap-host test

wheelhouse: venv ## Build the wheels the lab hosts install from (they never need PyPI)
	ansible-playbook playbooks/wheelhouse.yml

lint: venv ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint --profile production
	$(PY) scripts/render_topology_doc.py --check

docs: venv ## Render docs/topology.md from group_vars/all/topology.yml
	$(PY) scripts/render_topology_doc.py

test-unit: host-test venv ## The topology data and the filters derived from it
	pytest tests --ignore=tests/fresh_host

test-bootstrap: host-up venv ## make venv and make host-up on a fresh Debian 12 container (python3, make, git only)
	pytest tests/fresh_host

test-services: host-test venv ## The services against real PostgreSQL and Redis servers on loopback
	pytest services/tests

test-netns: host-test venv ## molecule test: mode=netns in a systemd lab-host container
	molecule test -s default

test-exercises: host-test venv ## molecule test -s exercises: every netns exercise and a class of two lab hosts
	molecule test -s exercises

test-docker: host-test venv ## molecule test -s docker: mode=docker on this host's Docker engine
	molecule test -s docker

test-vm: host-test host-vm venv ## molecule test -s vm: mode=netns in a lab VM (booted and removed; refused while lab VMs run)
	molecule test -s vm

test-vm-docker: host-test host-vm venv ## molecule test -s vm-docker: mode=docker in a lab VM, the docker scenario's tests over SSH
	molecule test -s vm-docker

test-multihost: host-test host-vm venv ## molecule test -s multihost: one netns lab over three lab VMs joined by VXLAN (refused while lab VMs run)
	molecule test -s multihost

test-multihost-docker: host-test host-vm venv ## molecule test -s multihost-docker: docker mode as a Swarm over three lab VMs, encrypted overlays (refused while lab VMs run)
	molecule test -s multihost-docker

# What test-vm-deploy checks in its VM: the deploy itself (the default scenario's topology, flow, publishing,
# isolation and forwarding tests, then state=absent), not the operations, drills or reboot test-vm adds.
VM_DEPLOY_TESTS ?= test_10_topology or test_20_flow or test_22_publish or test_30_isolation or test_31_forwarding_gate or test_90_absent
test-vm-deploy: host-test host-vm venv ## make test's lab-VM step: boot a VM, deploy netns into it, its deploy tests, remove it (test-vm's first half)
	molecule create -s vm && molecule prepare -s vm && molecule converge -s vm \
	  && PYTEST_ADDOPTS="-k '$(VM_DEPLOY_TESTS)'" molecule verify -s vm; \
	  status=$$?; molecule destroy -s vm || status=1; exit $$status

test-prepare: host-test venv ## What the parallel scenarios share, built once before them: the wheelhouse and the Debian base image
	ansible-playbook playbooks/wheelhouse.yml
	ansible-playbook playbooks/debian_base_image.yml

# The quick steps in turn, then the scenarios in parallel lanes (scripts/run-tests says why and how);
# each step's log is in build/test-logs/, and the output ends with what failed and every step's time.
test: host-test venv ## Every lint and every test (STEPS="test-docker …": only those steps)
	$(PY) scripts/run-tests $(STEPS)

up: $(LAB_HOST) venv ## Run the lab: make up MODE=netns|docker [LAB=vm: in the lab VMs of make vm]
	ansible-playbook site.yml $(LAB_INVENTORY) -e mode=$(MODE)

down: $(LAB_HOST) venv ## Remove the lab: make down MODE=netns|docker [LAB=vm]
	ansible-playbook site.yml $(LAB_INVENTORY) -e mode=$(MODE) -e state=absent

run-local: venv ## The four services on loopback, for a quick look (Ctrl-C stops them)
	$(PY) -m shoplab.devserver

clean: ## Remove build outputs (the lab VM image and key pair too: make vm-down first)
	@test ! -f $(VM_INVENTORY) || { echo "clean: lab VMs run on build/vm ($(VM_INVENTORY)): make vm-down first" >&2; exit 1; }
	rm -rf build

bench: host-test $(LAB_READY) venv ## Benchmark loopback, netns and docker, interleaved (QUICK=1: the < 2 minute smoke run; LAB=vm: the lab in the first VM)
	ansible-playbook playbooks/bench.yml $(LAB_INVENTORY) -e bench_lab=$(LAB) $(if $(QUICK),-e bench_quick=true)

test-bench: host-test venv ## The benchmark harness once, quick (a smoke test: no speed is asserted)
	ansible-playbook playbooks/bench.yml -e bench_quick=true

# Operating the lab (README "Operating the lab"): each takes MODE=netns|docker.
.PHONY: backup restore scale capture status diagram exercise check hint solve exercise-reset grade-class
backup: $(LAB_READY) venv ## Back up the lab's database to backups/<MODE>/: make backup MODE=…
	ansible-playbook playbooks/backup.yml $(LAB_INVENTORY) -e mode=$(MODE)

restore: $(LAB_READY) venv ## Restore a backup, verified: make restore MODE=… [FILE=backups/<MODE>/….dump, default the newest]
	ansible-playbook playbooks/restore.yml $(LAB_INVENTORY) -e mode=$(MODE) \
	  -e backup_file=$(abspath $(or $(FILE),$(lastword $(sort $(wildcard backups/$(MODE)/shoplab-$(MODE)-*.dump))),missing-backup-file))

status: $(LAB_READY) venv ## One report of the running lab and what is wrong with it: make status MODE=…
	ansible-playbook playbooks/status.yml $(LAB_INVENTORY) -e mode=$(MODE)

scale: $(LAB_READY) venv ## Scale in place: make scale MODE=… PRODUCTS=N [ORDERS=M]
	ansible-playbook playbooks/scale.yml $(LAB_INVENTORY) -e mode=$(MODE) $(if $(PRODUCTS),-e product_instances=$(PRODUCTS)) $(if $(ORDERS),-e order_instances=$(ORDERS))

capture: $(LAB_READY) venv ## Bounded capture with a per-flow summary (captures/<MODE>/): make capture MODE=… [SECONDS=10]
	ansible-playbook playbooks/capture.yml $(LAB_INVENTORY) -e mode=$(MODE) $(if $(SECONDS),-e lab_capture_seconds=$(SECONDS))

diagram: $(LAB_READY) venv ## Draw the running lab (docs/images/topology-<MODE>.svg/.png) and list differences from the data
	ansible-playbook playbooks/diagram.yml $(LAB_INVENTORY) -e mode=$(MODE)

# Exercises (README "Exercises"): break-and-fix, graded. Each takes MODE=netns|docker.
exercise: $(LAB_HOST) venv ## List the exercises, or start one: make exercise NAME=<name> MODE=… (deploys or resets the lab first)
ifeq ($(NAME),)
	ansible-playbook playbooks/exercises.yml
else
	ansible-playbook site.yml $(LAB_INVENTORY) -e mode=$(MODE)
	ansible-playbook playbooks/exercise.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_exercise_action=start -e exercise=$(NAME)
endif

check: $(LAB_READY) venv ## Grade the running lab against the current exercise (exit 0 only when every check passes)
	ansible-playbook playbooks/exercise.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_exercise_action=check $(if $(NAME),-e exercise=$(NAME))

hint: $(LAB_READY) venv ## The next hint for the current exercise
	ansible-playbook playbooks/exercise.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_exercise_action=hint

solve: $(LAB_READY) venv ## Apply the current exercise's reference solution (instructors, CI)
	ansible-playbook playbooks/exercise.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_exercise_action=solve

exercise-reset: $(LAB_READY) venv ## Undo the current exercise: back to the clean lab
	ansible-playbook playbooks/exercise.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_exercise_action=reset

grade-class: $(if $(INVENTORY),,$(LAB_READY)) venv ## Grade every host of group `students`: make grade-class EXERCISE=<name> [INVENTORY=…|LAB=vm]
	ansible-playbook playbooks/grade_class.yml -e exercise=$(EXERCISE) $(if $(INVENTORY),-i $(INVENTORY),$(LAB_INVENTORY))

# Fault drills (README "Fault drills"): each takes MODE=netns|docker.
.PHONY: drill drill-heal drill-list
drill: $(LAB_READY) venv ## Break the lab on purpose under load, check no order is lost: make drill MODE=… [FAULT=<kind>] [DURATION=s] [RATE=orders/s] [LAB=vm]
	ansible-playbook playbooks/drill.yml $(LAB_INVENTORY) -e mode=$(MODE) $(if $(FAULT),-e lab_drill_fault=$(FAULT)) \
	  $(if $(DURATION),-e lab_drill_duration_s=$(DURATION)) $(if $(RATE),-e lab_drill_order_rate=$(RATE))

drill-heal: $(LAB_READY) venv ## Undo every fault a drill can leave (after Ctrl-C; idempotent): make drill-heal MODE=… [LAB=vm]
	ansible-playbook playbooks/drill.yml $(LAB_INVENTORY) -e mode=$(MODE) -e lab_drill_action=heal

drill-list: venv ## The fault kinds, their parameters and their written expectations: make drill-list MODE=…
	ansible-playbook playbooks/drill.yml -e mode=$(MODE) -e lab_drill_action=list

# Lab VMs (README "Lab VMs"): a Debian 12 image built offline from the Debian mirror, booted with libvirt.
.PHONY: host-vm vm vm-down vm-inventory
host-vm: ## Install and start what `make vm` needs on this machine (QEMU, libvirt)
	scripts/bootstrap-host vm

vm: host-vm venv ## Build (or reuse) the lab VM image, boot VMS=N lab VMs (default 1), write inventory/vms.yml [VM_ACCEL=auto|kvm|tcg]
	ansible-playbook playbooks/vm.yml -e vm_host_count=$(VMS) $(if $(VM_ACCEL),-e vm_host_accel=$(VM_ACCEL))

vm-down: host-vm venv ## Remove the lab VMs, their disks, network, firewall rules and inventory/vms.yml (the cached image stays)
	ansible-playbook playbooks/vm.yml -e state=absent

vm-inventory:
	@test -f $(VM_INVENTORY) || { echo "LAB=vm: $(VM_INVENTORY) is missing: boot the lab VMs first (make vm [VMS=N])" >&2; exit 1; }
