"""The controls a restore drill's evidence supports, for the report's mapping section.

Worded as what the evidence *shows*; whether it satisfies a control in a given audit is the
auditor's judgement, and the report says so.
"""

from __future__ import annotations

from typing import Final

CONTROLS: Final = (
    (
        "ISO/IEC 27001:2022, Annex A 8.13 (Information backup)",
        "backup copies are maintained and regularly tested",
        "a dated restore test of a named backup (identified by SHA-256), with the checks it "
        "passed or failed",
    ),
    (
        "NIS2 Directive (EU) 2022/2555, Art. 21(2)(c)",
        "business continuity, such as backup management and disaster recovery",
        "the backup was restored in isolation and the service measured against its recovery "
        "time and recovery point objectives",
    ),
    (
        "DORA Regulation (EU) 2022/2554, Art. 12",
        "backup policies and restoration procedures, tested periodically",
        "a restoration executed as a procedure, with every phase timed and the result recorded "
        "in a tamper-evident ledger",
    ),
    (
        "BSI IT-Grundschutz CON.3 (Datensicherungskonzept)",
        "data backups are tested for restorability",
        "the backup booted and its service answered the scenario's checks; the backup itself "
        "was left unchanged (hash, mode and owner compared)",
    ),
    (
        "SOC 2 Trust Services Criteria A1.3",
        "recovery plan procedures are tested to meet objectives",
        "the recovery was tested against stated RTO and RPO objectives with a verdict for each",
    ),
)
