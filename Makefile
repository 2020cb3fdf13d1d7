# Shortcuts; every target is a script the README documents.
VERSION := $(shell python3 -c "import re;print(re.search(r'__version__ = \"(.+)\"', open('puller/__init__.py').read()).group(1))")
IMAGE ?= bbklab/puller

.PHONY: image test demo sanity bench
image:  ## build the container image with the classic builder (no buildx needed)
	DOCKER_BUILDKIT=0 docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
sanity:
	bash scripts/sanity.sh
bench:
	bash bench/run.sh
