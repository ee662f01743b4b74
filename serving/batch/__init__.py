"""Batch scoring on Spark: `python -m serving.batch` (`__main__`) scores a file or folder.

`plan` checks the command line and the model into a job, `columns` matches the input's columns to
the signature, `spark_job` reads, scores, writes and moves the output into place, and `log` appends
the batch's rows to the prediction log. PySpark is imported only by `spark_job`, so the rest (and
the fast tests) work without the Spark extra. It never imports the online proxy.
"""
