"""Sphinx directives for the ip_diffim task pages.

documenteer 2 dropped the Science Pipelines ``lsst-task-*`` directives. This
extension provides the three the task pages use, under the same names, so a
page reads as it would in pipelines.lsst.io:

``lsst-task-topic:: CLASS``
    Marks the page as the topic page of a task (no output).
``lsst-task-api-summary:: CLASS``
    The task's summary line, a link to its API entry and its public methods.
``lsst-task-config-subtasks:: CLASS``
    A table of the retargetable subtasks (``ConfigurableField`` and
    ``RegistryField``) with their default targets.
``lsst-task-config-fields:: CLASS``
    A table of the other config fields: name, type, default and the
    ``doc=`` text, read by introspecting the Config class.

Field documentation is inserted as plain text (never parsed as
reStructuredText), so a field's ``doc=`` string cannot break the build.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

_SUBTASK_FIELDS = ("ConfigurableField", "RegistryField")


def _importObject(path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    moduleName, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(moduleName), attr)


def _summaryLine(obj: Any) -> str:
    """Return the first paragraph of an object's docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _qualName(obj: Any) -> str:
    """Return ``module.Name`` of a class, or its repr for anything else."""
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)


def _table(header: list[str], rows: list[list[nodes.Node]], widths: list[int]) -> nodes.table:
    """Build a docutils table from a header and rows of cell nodes."""
    table = nodes.table(classes=["ipdiffim-config-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    headRow = nodes.row()
    for title in header:
        headRow += nodes.entry("", nodes.paragraph(text=title))
    head += headRow
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += nodes.entry("", cell)
        body += row
    return table


def _literal(text: str) -> nodes.paragraph:
    """Return a paragraph holding one literal (monospace) text."""
    return nodes.paragraph("", "", nodes.literal(text=text))


def _fieldType(field: Any) -> str:
    """Describe the value type of a pex_config field."""
    kind = type(field).__name__
    if kind in ("ListField", "DictField"):
        item = getattr(field, "itemtype", None) or getattr(field, "itemType", None)
        return f"{kind}[{getattr(item, '__name__', item)}]"
    if kind == "ConfigChoiceField":
        return "ConfigChoiceField: " + ", ".join(sorted(field.typemap))
    if kind == "ConfigField":
        return f"ConfigField[{field.dtype.__name__}]"
    dtype = getattr(field, "dtype", None)
    name = getattr(dtype, "__name__", str(dtype))
    return name if kind == "Field" else f"{kind}[{name}]"


def _fieldDefault(field: Any) -> str:
    """Describe the default of a pex_config field."""
    kind = type(field).__name__
    if kind == "ConfigField":
        return "(nested config)"
    default = getattr(field, "default", None)
    if isinstance(default, type):
        return _qualName(default)
    return repr(default)


class _TaskDirective(Directive):
    """Base of the directives taking one task class path as argument."""

    required_arguments = 1
    has_content = False

    def taskClass(self) -> Any:
        """Import the task class named in the argument."""
        return _importObject(self.arguments[0])

    def configFields(self) -> list[tuple[str, Any]]:
        """Return the task's config fields, sorted by name."""
        config = self.taskClass().ConfigClass
        return sorted(config._fields.items())


class TaskTopicDirective(_TaskDirective):
    """``lsst-task-topic``: marks a task topic page."""

    def run(self) -> list[nodes.Node]:
        """Check that the task imports; produce no output."""
        self.taskClass()
        return []


class TaskApiSummaryDirective(_TaskDirective):
    """``lsst-task-api-summary``: summary line and public methods."""

    def run(self) -> list[nodes.Node]:
        """Build the summary paragraph and the method list."""
        cls = self.taskClass()
        path = self.arguments[0]
        out: list[nodes.Node] = [
            nodes.paragraph("", "", nodes.literal(text=path), nodes.Text(": " + _summaryLine(cls)))
        ]
        methods = nodes.bullet_list()
        for name, member in sorted(vars(cls).items()):
            if name.startswith("_") or not callable(member) or isinstance(member, type):
                continue
            item = nodes.list_item()
            item += nodes.paragraph(
                "", "", nodes.literal(text=f"{name}()"), nodes.Text(": " + _summaryLine(member))
            )
            methods += item
        if len(methods):
            out.append(nodes.paragraph(text="Public methods defined by this class:"))
            out.append(methods)
        return out


class TaskConfigSubtasksDirective(_TaskDirective):
    """``lsst-task-config-subtasks``: table of retargetable subtasks."""

    def run(self) -> list[nodes.Node]:
        """Build the subtask table (or a sentence saying there are none)."""
        rows = []
        for name, field in self.configFields():
            kind = type(field).__name__
            if kind not in _SUBTASK_FIELDS:
                continue
            if kind == "ConfigurableField":
                default = _qualName(field.target)
            else:
                default = f"{field.default!r} (one of {', '.join(sorted(field.registry))})"
            rows.append([_literal(name), _literal(default), nodes.paragraph(text=field.doc)])
        if not rows:
            return [nodes.paragraph(text="This task has no retargetable subtasks.")]
        return [_table(["Subtask field", "Default target", "Description"], rows, [20, 30, 50])]


class TaskConfigFieldsDirective(_TaskDirective):
    """``lsst-task-config-fields``: table of the task's config fields."""

    def run(self) -> list[nodes.Node]:
        """Build the field table."""
        rows = []
        for name, field in self.configFields():
            if type(field).__name__ in _SUBTASK_FIELDS:
                continue
            rows.append(
                [
                    _literal(name),
                    _literal(_fieldType(field)),
                    _literal(_fieldDefault(field)),
                    nodes.paragraph(text=field.doc),
                ]
            )
        return [_table(["Field", "Type", "Default", "Description"], rows, [18, 17, 15, 50])]


class _Pep695ForwardReferenceFilter(logging.Filter):
    """Drop sphinx-autodoc-typehints' warning about PEP 695 type parameters.

    With ``from __future__ import annotations``, the annotations of
    ``class PerBasisCache[T]`` are strings naming ``T``, which lives in the
    class's type-parameter scope, not in the module globals that
    sphinx-autodoc-typehints evaluates them in. The signature is still
    rendered (from the strings). Any other unresolved reference still warns.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for the PEP 695 type-parameter warning only."""
        message = record.getMessage()
        return not (
            message.startswith("Cannot resolve forward reference")
            and message.endswith("name 'T' is not defined")
        )


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives."""
    logging.getLogger("sphinx.sphinx_autodoc_typehints").addFilter(_Pep695ForwardReferenceFilter())
    app.add_directive("lsst-task-topic", TaskTopicDirective)
    app.add_directive("lsst-task-api-summary", TaskApiSummaryDirective)
    app.add_directive("lsst-task-config-subtasks", TaskConfigSubtasksDirective)
    app.add_directive("lsst-task-config-fields", TaskConfigFieldsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
