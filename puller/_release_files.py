"""Image references in release files, for ``puller pull -f FILE`` (``-`` for stdin), and in a
preheat's report, for ``puller pull --digests FILE``.

A file is a list (one reference a line, ``#`` comments) when its first line that is not blank or a
comment holds a single reference-like word; anything else is YAML: compose files
(``services.*.image``), Kubernetes manifests (every ``image:`` in every document) or a YAML list of
references. Release files come from anywhere, so reading one is bounded in time and memory:

- at most ``MAX_BYTES``; UTF-8 (a byte-order mark is skipped), or UTF-16/UTF-32 with a byte-order mark;
  control characters other than tab and line ends mean binary data;
- YAML is read as a stream of parser events (libyaml's when PyYAML has it) and never built into
  objects: memory is the file plus the references found, and time is linear in the file;
- aliases are never expanded: a collection is searched where it is anchored, and ``image: *name``
  takes the anchored string. A document whose aliases would add more than ``MAX_ALIAS_NODES`` nodes
  (the "billion laughs"), an alias inside the node it names, or nesting deeper than ``MAX_DEPTH``
  is refused: no real release file looks like that, and the tools that deploy it would expand it.

Every problem is an ``InvalidRequest`` naming the file (and the document and line for YAML).
"""

import codecs
import json
import re
import sys

import yaml

from puller.core._errors import InvalidRequest

MAX_BYTES = 64 << 20
MAX_DEPTH = 100
MAX_ALIAS_NODES = 1000000
STR_TAG, NULL_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
_KEY, _IMAGE, _OTHER = "key", "image", "other"  # what a node is to the collection it is in
# libyaml parses in C, about 20 times faster than PyYAML's pure-Python parser.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# UTF-32 before UTF-16: their little-endian marks share the first two bytes.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A reference: name[:port]/path[:tag][@digest], the registry possibly an IPv6 literal. A word ending
# in ":" is a YAML key.
_WORD = re.compile(r"(?:[A-Za-z0-9]|\[[0-9A-Fa-f:.%]*\])\S*(?<!:)")


def images_from_file(path):
    """Every image reference in FILE (``-`` for stdin), in file order, each once."""
    field = "-f %s" % path
    text = _decode(_read(path, field), field)
    if _is_list(text):
        refs = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        refs = [r for r in refs if r]
        if not refs:
            raise InvalidRequest("no image references", field)
    else:
        refs = _Events(field, _LOADER(text)).images()
        if not refs:
            raise InvalidRequest("no image references (no image: values in its YAML)", field)
    return list(dict.fromkeys(refs))


def images_from_report(path):
    """The images of a preheat's ``--json`` report (``puller preheat --json``), each with its digest.

    Its ``success`` rows pin their digest (pulled by digest through the
    mirrors, verified, then tagged); its ``failure`` rows, which have no
    copy at the site, are pulled as without a report."""
    field = "--digests %s" % path
    try:
        report = json.loads(_decode(_read(path, field), field))
    except ValueError as exc:
        raise InvalidRequest("not JSON: %s" % exc, field)
    rows = [(name, report.get(name)) for name in ("success", "failure")] if isinstance(report, dict) else []
    if not rows or not all(isinstance(found, list) for _name, found in rows):
        raise InvalidRequest("not a report: want the JSON object of success and failure rows that "
                             "puller preheat --json prints", field)
    images = []
    for name, found in rows:
        for n, row in enumerate(found):
            if not isinstance(row, dict) or not isinstance(row.get("image"), str):
                raise InvalidRequest("%s[%d] is not a row with an image" % (name, n), field)
            item = {key: row[key] for key in ("image", "tag", "project") if isinstance(row.get(key), str)}
            if name == "success":
                if not row.get("digest"):
                    raise InvalidRequest("%s[%d] (%s) has no digest" % (name, n, row["image"]), field)
                item["digest"] = row["digest"]
            images.append(item)
    if not images:
        raise InvalidRequest("no rows", field)
    return images


def _read(path, field):
    try:
        if path == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            if stdin is None:
                raise InvalidRequest("stdin is not readable", field)
            data = stdin.read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as stream:
                data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidRequest("cannot read it: %s" % (exc.strerror or exc), field)
    if len(data) > MAX_BYTES:
        raise InvalidRequest("larger than %d MiB" % (MAX_BYTES >> 20), field)
    return data


def _decode(data, field):
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise InvalidRequest("not %s text (byte %d)" % (encoding.upper(), exc.start), field)
        raise InvalidRequest("not UTF-8 text: byte 0x%02x at line %d" % (
            data[exc.start], data.count(b"\n", 0, exc.start) + 1), field)
    control = _CONTROL.search(text)
    if control:
        at = control.start()
        raise InvalidRequest("binary data, not text: control character 0x%02x at line %d%s" % (
            ord(control.group()), text.count("\n", 0, at) + 1,
            " (UTF-16 needs a byte-order mark)" if control.group() == "\x00" else ""), field)
    return text


def _is_list(text):
    """Whether the first line that is not blank or a comment is one reference-like word."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        word = text[start:end].split("#", 1)[0].strip()
        if word:
            return _WORD.fullmatch(word) is not None
        start = end + 1
    return True


class _Events:
    """The ``image:`` values of a YAML stream, from its parser events, without building documents.

    Each open collection is a frame ``[is_mapping, anchor, nodes, expect_key, image_next]``: ``nodes``
    counts the nodes under it as if aliases were expanded, which is what the alias limit weighs.
    """

    def __init__(self, field, loader):
        self.field, self.loader = field, loader
        self.found, self.stack, self.anchors = [], [], {}
        self.document, self.between, self.alias_nodes = 0, True, 0

    def images(self):
        handlers = {yaml.ScalarEvent: self._scalar, yaml.AliasEvent: self._alias,
                    yaml.MappingStartEvent: self._start, yaml.SequenceStartEvent: self._start,
                    yaml.MappingEndEvent: self._end, yaml.SequenceEndEvent: self._end,
                    yaml.DocumentStartEvent: self._document_start, yaml.DocumentEndEvent: self._document_end}
        get_event = self.loader.get_event
        try:
            while True:
                event = get_event()
                if event is None or isinstance(event, yaml.StreamEndEvent):
                    return self.found
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
        except yaml.MarkedYAMLError as exc:
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                problem = "%s (%s)" % (exc.problem, exc.context)
            raise self._error(problem, exc.problem_mark or exc.context_mark)
        except yaml.YAMLError as exc:
            raise self._error(str(exc).splitlines()[0] if str(exc) else "invalid YAML", None)
        finally:
            self.loader.dispose()

    def _error(self, problem, mark):
        where = "document %d" % (self.document + (1 if self.between else 0))
        if mark is not None:
            where += ", line %d" % (mark.line + 1)
        return InvalidRequest("%s: %s" % (where, " ".join(problem.split())), self.field)  # one line

    def _is_str(self, event):
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        return tag == STR_TAG

    def _document_start(self, _event):
        # Anchors belong to their document.
        self.document, self.between, self.anchors, self.alias_nodes = self.document + 1, False, {}, 0

    def _document_end(self, _event):
        self.between = True

    def _role(self, frame):
        """What the node arriving in ``frame`` is, and the frame's state moved past it."""
        if frame[0]:
            if frame[3]:
                frame[3] = False
                return _KEY
            image, frame[3], frame[4] = frame[4], True, False
            return _IMAGE if image else _OTHER
        return _IMAGE if len(self.stack) == 1 else _OTHER  # an item of a YAML list of references

    def _scalar(self, event):
        if event.anchor is not None:
            self.anchors[event.anchor] = (1, event.value if self._is_str(event) else None)
        if not self.stack:
            if self.loader.resolve(yaml.ScalarNode, event.value, event.implicit) != NULL_TAG:
                raise self._error("a single value, not a mapping or a list", event.start_mark)
            return
        frame = self.stack[-1]
        frame[2] += 1
        role = self._role(frame)
        if role is _KEY:
            frame[4] = event.value == "image" and self._is_str(event)
        elif role is _IMAGE and self._is_str(event):
            self.found.append(event.value)

    def _alias(self, event):
        name = event.anchor
        if name not in self.anchors:
            raise self._error("undefined alias *%s" % name, event.start_mark)
        if self.anchors[name] is None:
            raise self._error("alias *%s inside the node it names" % name, event.start_mark)
        nodes, value = self.anchors[name]
        self.alias_nodes += nodes
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise self._error("its aliases expand to more than %d nodes" % MAX_ALIAS_NODES, event.start_mark)
        frame = self.stack[-1]  # a document's root cannot be an alias: nothing is anchored yet
        frame[2] += nodes
        role = self._role(frame)
        if role is _KEY:
            frame[4] = value == "image"
        elif role is _IMAGE and value is not None:
            self.found.append(value)

    def _start(self, event):
        if self.stack:
            self._role(self.stack[-1])  # a collection is a key or a value, never an image reference
        if len(self.stack) >= MAX_DEPTH:
            raise self._error("nested deeper than %d levels" % MAX_DEPTH, event.start_mark)
        if event.anchor is not None:
            self.anchors[event.anchor] = None  # open: an alias to it now would be inside it
        is_mapping = isinstance(event, yaml.MappingStartEvent)
        self.stack.append([is_mapping, event.anchor, 1, True, False])

    def _end(self, _event):
        frame = self.stack.pop()
        if frame[1] is not None:
            self.anchors[frame[1]] = (frame[2], None)
        if self.stack:
            self.stack[-1][2] += frame[2]
