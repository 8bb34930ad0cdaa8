"""Splitting interaction logs without leaking the future."""

from ._split import LeaveLastOut, LogSplit, TemporalSplit, leave_last_out, temporal_split

__all__ = ["LeaveLastOut", "LogSplit", "TemporalSplit", "leave_last_out", "temporal_split"]
