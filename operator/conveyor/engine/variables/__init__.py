"""GitLab CI variables, in one home: `$VAR` expansion and the job's variable set as pods get
it (`expand`), GitLab's predefined variables (`predefined`), and a job's whole set with GitLab's
precedence (`job`). The rule evaluator, the importer, cache keys, Environments and the Job
builder all use these; nothing else defines a CI variable."""
