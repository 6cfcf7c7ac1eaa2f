"""The EU AI Act section of an energy report: which field serves which provision, and
which figures are estimates and how they were made."""
from __future__ import annotations

from typing import Optional, Sequence

from tao_core.governance.provenance import UNCERTAINTY_METHOD


def regulatory_section(
    *, measured_all: bool, energy_method: str, facility_method: str, pue_source: str,
    attribution_methods: Sequence[str], emissions_method: Optional[str], federated: bool = False,
) -> dict:
    """Which report field serves which provision, and which figures are estimates."""
    e_note = "Annex XI, Section 1, point 2(e): known or estimated energy consumption"
    mapping = [
        {"field": "energy.it_energy_j, energy.facility_energy_j",
         "provision": "Regulation (EU) 2024/1689, Annex XI, Section 1, point 2(e)",
         "purpose": "the known or estimated energy consumption; facility energy is the figure at the meter"},
        {"field": "provenance (measured/modeled shares, by_source methods, uncertainty)",
         "provision": "Annex XI, Section 1, point 2(e), second subparagraph",
         "purpose": "whether the consumption is known (measured) or estimated, and the basis of the estimate"},
        {"field": "hardware, subject.makespan_s, subject.tasks_completed, energy.by_node",
         "provision": "Annex XI, Section 1, point 2(d)",
         "purpose": "computational resources and time used (context; floating point operations are not counted)"},
        {"field": "ledger.head_hash, ledger.key_ids, integrity.content_sha256",
         "provision": "Article 53(1)(a)",
         "purpose": "documentation drawn up, kept up to date and provided on request: the report is tied to a signed, "
                    "hash-chained record that a third party can check offline (the Act does not prescribe this)"},
        {"field": "model_documentation",
         "provision": "General-Purpose AI Code of Practice (10 July 2025), Transparency chapter, Model Documentation "
                      "Form (Art. 53(1)(a), Annex XI, Section 1, points 2(d) and 2(e))",
         "purpose": "the form's energy and compute items filled from the ledger, those TAO cannot know left to the "
                    "provider with the reason, and the measurement boundary the form does not define"},
        {"field": "work_units, sci",
         "provision": "none (ISO/IEC 21031:2024 Software Carbon Intensity for sci)",
         "purpose": "energy and emissions per unit of useful work the tasks counted; not required by the Act"},
        {"field": "energy.by_component, energy.by_group, energy.by_job, optimization_inversion, controller, emissions",
         "provision": "none (supporting detail)",
         "purpose": "not required by Article 53 or Annex XI; explains where the energy went and how it was managed"},
    ]
    estimates = [
        {"field": "energy.it_energy_j", "estimated": not measured_all,
         "method": ("measured" if measured_all else "partly or wholly modeled") + f": {energy_method}"},
        {"field": "energy.facility_energy_j", "estimated": True,
         "method": f"{facility_method}; PUE from {pue_source}"},
        {"field": "energy.by_group, energy.by_job", "estimated": True,
         "method": "apportioned from node energy: " + ("; ".join(attribution_methods) or "method of the records")},
        {"field": "provenance.uncertainty", "estimated": True, "method": UNCERTAINTY_METHOD},
    ]
    if emissions_method is not None:
        estimates.append({"field": "emissions.emissions_kg_co2e", "estimated": True, "method": emissions_method})
    estimates.append({"field": "model_documentation.training_energy", "estimated": not measured_all,
                      "method": "facility energy (energy.facility_energy_j) in MWh, to the significant figures its "
                                "standard uncertainty allows (at least two)"})
    notes = (
        "Article 53(1)(a) requires providers of general-purpose AI models to keep technical documentation holding "
        "at least the information of Annex XI; " + e_note + ", which may be based on the computational resources "
        "used where the consumption is unknown. This report covers one run or job; relating it to a model "
        "(its training, testing or inference) is up to the provider."
    )
    if federated:
        notes += " A federated report sums member reports; each member's figures keep their own provenance."
    return {"regulation": "Regulation (EU) 2024/1689 (AI Act)", "mapping": mapping, "estimates": estimates, "notes": notes}
