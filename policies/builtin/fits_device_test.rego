package cairn.fits_device_test

import data.cairn.fits_device

req := {"memory": "1Gi", "memoryBytes": 1073741824, "arch": ["arm64", "amd64"]}

cls(names, facts) := {"names": names, "count": count(names), "facts": facts}

test_fits_allowed if {
	count(fits_device.deny) == 0 with input as {
		"model": {"requires": req},
		"targets": {"classes": [cls(["orin-1", "orin-2"], {"arch": "arm64", "memory": 8589934592})]},
	}
}

test_no_requirements_allowed if {
	count(fits_device.deny) == 0 with input as {
		"model": {},
		"targets": {"classes": [cls(["pi-1"], {"arch": "arm", "memory": 1024})]},
	}
}

test_small_device_denied if {
	some msg in fits_device.deny with input as {
		"model": {"requires": req},
		"targets": {"classes": [
			cls(["orin-1"], {"arch": "arm64", "memory": 8589934592}),
			cls(["pi-1", "pi-2"], {"arch": "arm64", "memory": 536870912}),
		]},
	}
	contains(msg, "target pi-1 and 1 more: memory 512Mi is below")
}

test_wrong_arch_denied if {
	some msg in fits_device.deny with input as {
		"model": {"requires": req},
		"targets": {"classes": [cls(["pi-1"], {"arch": "arm", "memory": 8589934592})]},
	}
	contains(msg, "target pi-1: arch \"arm\" is not in")
}

test_missing_accelerator_denied if {
	count(fits_device.deny) == 1 with input as {
		"model": {"requires": {"accelerators": ["nvidia-gpu"]}},
		"targets": {"classes": [cls(["x"], {"arch": "amd64", "accelerators": ["tpu"]})]},
	}
}

test_unknown_memory_warns if {
	count(fits_device.warn) == 1 with input as {
		"model": {"requires": req},
		"targets": {"classes": [cls(["x"], {"arch": "amd64"})]},
	}
}
