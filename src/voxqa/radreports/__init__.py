"""Report-grounded claims: extract spatial statements from radiology reports (English and
German), verify each against the study's segmentation geometry, and make items from the
supported ones only (``docs/reports.md``)."""
