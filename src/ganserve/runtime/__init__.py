"""Local processes: the embedded broker and the supervisor behind `ganserve up`."""
