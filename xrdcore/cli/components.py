"""What is installed and what the labels are: ``plugins``, ``list``, ``labels``, ``levels``."""

from __future__ import annotations

import json

from xrdcore.cli.options import json_flag

#: the commands of this module and their one-line help (also what `xrdcore --help` lists)
COMMANDS = {
    "plugins": "installed plugins, their status and components",
    "list": "components of one kind (encoders, hierarchies, ...)",
    "labels": "every hierarchy level of one space group",
    "levels": "the hierarchy levels, or the classes of one level",
}


def add_commands(commands) -> None:
    p = commands.add_parser("plugins", help=COMMANDS["plugins"])
    json_flag(p)
    p.set_defaults(run=_plugins)

    p = commands.add_parser("list", help=COMMANDS["list"])
    p.add_argument("kind", help="encoders, hierarchies, schedulers, simulators, generators, datasets, models")
    p.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. '*mamba*'")
    json_flag(p)
    p.set_defaults(run=_list)

    p = commands.add_parser("labels", help=COMMANDS["labels"])
    p.add_argument("space_group", help="number (1-230) or Hermann-Mauguin symbol, e.g. 14, P2_1/c, P21/n")
    json_flag(p)
    p.set_defaults(run=_labels)

    p = commands.add_parser("levels", help=COMMANDS["levels"])
    p.add_argument("level", nargs="?", help="e.g. extinction_class; omit for all levels")
    json_flag(p)
    p.set_defaults(run=_levels)


def _plugins(args) -> None:
    from xrdcore import discovery, get_registry

    registry = get_registry()
    discovery.remember(registry)  # what `xrdcore list` answers from (refreshed on every call)
    if args.json:
        print(json.dumps({"plugins": [p.to_dict() for p in registry.plugins.values()],
                          "warnings": registry.warnings}, indent=2))
        return
    for plugin in registry.plugins.values():
        tag = " (built-in)" if plugin.builtin else ""
        print(f"{plugin.name} {plugin.version or '?'}{tag}: {plugin.status}")
        kinds: dict[str, list[str]] = {}
        for c in plugin.components:
            kinds.setdefault(c.kind, []).append(registry.public_name(c))
        for kind, names in kinds.items():
            print(f"  {kind}: {', '.join(names)}")
        for error in plugin.errors:
            print(f"  error: {error}")
        for note in plugin.notes:
            print(f"  note: {note}")
        if args.debug:
            for tb in plugin.tracebacks:
                print("  " + tb.rstrip().replace("\n", "\n  "))
    for warning in registry.warnings:
        print(f"warning: {warning}")


def _list(args) -> None:
    """From the listing remembered in this environment when nothing it depends on has changed
    (no plugin is imported, nor pluggy), else from the plugins, loaded and remembered."""
    from fnmatch import fnmatchcase

    from xrdcore import discovery

    rows = discovery.remembered_listing(args.kind)
    if rows is None:
        from xrdcore import get_registry

        registry = get_registry()
        _warn_about_plugins(registry)
        discovery.remember(registry)
        rows = discovery.listing(registry, args.kind)
    rows = [row for row in rows if fnmatchcase(row["name"], args.pattern)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"no {args.kind} match {args.pattern!r}" if args.pattern != "*" else f"no {args.kind} installed")
        return
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  [{row['plugin']}]  {row['description']}".rstrip())


def _warn_about_plugins(registry) -> None:
    """One line on standard error per plugin that failed to load, in whole or in part, naming its
    distribution (a listing without its components would otherwise look complete), and per
    registry warning."""
    import sys

    for plugin in registry.plugins.values():
        if plugin.enabled and plugin.errors:
            what = "failed to load" if plugin.status == "failed" else "loaded in part"
            more = f" (and {len(plugin.errors) - 1} more)" if len(plugin.errors) > 1 else ""
            print(f"warning: plugin {plugin.name} {what}, {plugin.errors[0]}{more}; see `xrdcore plugins`, "
                  f"or XRDCORE_DISABLE={plugin.name} to skip it", file=sys.stderr)
    for warning in registry.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _labels(args) -> None:
    from xrdcore.crystal import level, level_names, space_group

    sg = space_group(args.space_group)
    rows = [(name, int(level(name).table[sg.number - 1]), level(name).classes[level(name).table[sg.number - 1]])
            for name in level_names()]
    if args.json:
        print(json.dumps({"number": sg.number, "symbol": sg.symbol, "full_symbol": sg.full_symbol,
                          "schoenflies": sg.schoenflies, "hall_number": sg.hall_number,
                          "levels": {n: {"index": i, "class": c} for n, i, c in rows}}, indent=2))
        return
    print(f"space group {sg.number}: {sg.symbol}  ({sg.full_symbol}; {sg.schoenflies})")
    width = max(len(name) for name in level_names())
    for name, index, cls in rows:
        print(f"  {name:<{width}} {index:>4}  {cls}")


def _levels(args) -> None:
    from xrdcore.crystal import level, level_names, space_groups

    if args.level is None:
        if args.json:
            print(json.dumps({n: {"classes": len(level(n)), "description": level(n).description}
                              for n in level_names()}, indent=2))
            return
        width = max(len(name) for name in level_names())
        for name in level_names():
            print(f"{name:<{width}} {len(level(name)):>4}  {level(name).description}")
        return
    lv = level(args.level)
    symbols = [sg.symbol for sg in space_groups()]
    classes = [{"index": i, "class": c, "space_groups": lv.members(i)} for i, c in enumerate(lv.classes)]
    if args.json:
        print(json.dumps({"level": lv.name, "description": lv.description, "classes": classes}, indent=2))
        return
    print(f"{lv.name}: {len(lv)} classes, {lv.description}")
    for row in classes:
        members = ", ".join(f"{n} {symbols[n - 1]}" for n in row["space_groups"])
        print(f"  {row['index']:>3}  {row['class']:<24} {members}")
