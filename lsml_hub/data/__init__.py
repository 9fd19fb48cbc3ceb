"""Tasks from Hugging Face datasets, local files or builtin offline sources, and their batch streams.

Example:
    >>> from lsml_hub.data import load_task, BatchStream, Augment
    >>> task = load_task("builtin:latin_upper?samples_per_class=20")
    >>> task.num_classes
    26
"""

from lsml_hub.data.builtin import BUILTINS
from lsml_hub.data.cache_folder import cache_root
from lsml_hub.data.sampling import stratified_subset
from lsml_hub.data.spec import TaskSpec, parse_class_subset
from lsml_hub.data.stream import Augment, Batch, BatchStream, Normalizer, eval_batches
from lsml_hub.data.task import Task, load_task
from lsml_hub.data.tensors import ImageTensors, to_tensors

__all__ = [
    "BUILTINS", "Augment", "Batch", "BatchStream", "ImageTensors", "Normalizer", "Task", "TaskSpec",
    "cache_root", "eval_batches", "load_task", "parse_class_subset", "stratified_subset", "to_tensors",
]
