#!/usr/bin/env python
"""One entry point for every transfer task (the table: transfer/tasks.py).

    python tools/run_transfer.py --task TASK --weights W [task options]

W may be a raw pretraining checkpoint (any supported layout), a converted backbone or a torchvision
state_dict; `random` gives a randomly initialised baseline. `--task TASK --help` lists a task's options.
Each run writes run.json (its inputs), metrics.json, load_report.json and its resolved config into
--output. Rerunning into the same --output resumes the run (or says it has finished) when the inputs
are the same, and stops naming the differences when they are not (--overwrite starts over).
"""
import sys

from transfer.tasks import TASKS


def usage() -> str:
    width = max(map(len, TASKS))
    rows = [f"    {t.name:<{width}}  {t.summary}" + (f"  ({t.engine})" if t.engine else "") for t in TASKS.values()]
    return __doc__ + "\nTasks:\n" + "\n".join(rows) + "\n    (knn, linear_cls, colour_probe: --stage 1..4 probes layer1..layer4 features)\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--task" not in argv or argv.index("--task") + 1 >= len(argv):
        print(usage())
        return 0 if ("-h" in argv or "--help" in argv) else 2
    i = argv.index("--task")
    task = argv[i + 1]
    rest = argv[:i] + argv[i + 2:]
    if task not in TASKS:
        print(f"error: unknown task {task!r}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(TASKS[task].runner).main(task, rest)


if __name__ == "__main__":
    sys.exit(main())
