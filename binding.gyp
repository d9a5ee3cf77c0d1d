{
  # walrus.node, the addon `npm install` builds (node-gyp rebuild), has no test seams.
  # walrus_test.node, the same addon with the fault and power-loss seams (WALRUS_TEST_SEAMS and
  # native/test/), exists only when configured with --walrus_test=1 (npm run build:test-addon,
  # which npm test runs). Sources that hold no seam hook are compiled once, into walrus_core.
  "variables": {
    "walrus_test%": 0
  },
  "target_defaults": {
    "include_dirs": [
      "<!@(node -p \"require('node-addon-api').include\")"
    ],
    "defines": [
      "NAPI_VERSION=8",
      "NODE_ADDON_API_CPP_EXCEPTIONS",
      "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
      "NODE_ADDON_API_DISABLE_DEPRECATED",
      "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
    ],
    "cflags!": ["-fno-exceptions", "-O3"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"],
    "cflags_cc": ["-std=c++17", "-fexceptions"]
  },
  "targets": [
    {
      "target_name": "walrus_core",
      "type": "static_library",
      "cflags": ["-fPIC"],
      "sources": [
        "native/args.cc",
        "native/checksums.cc",
        "native/crc32c.cc",
        "native/errors.cc",
        "native/uring.cc"
      ]
    },
    {
      "target_name": "walrus",
      "dependencies": ["walrus_core"],
      "sources": [
        "native/addon.cc",
        "native/fileops.cc",
        "native/io_context.cc",
        "native/mapped_files.cc",
        "native/sysio.cc",
        "native/thread_exit.cc",
        "native/write_batch.cc"
      ]
    }
  ],
  "conditions": [
    ["walrus_test==1", {
      "targets": [
        {
          "target_name": "walrus_test",
          "dependencies": ["walrus_core"],
          "defines": ["WALRUS_TEST_SEAMS"],
          "sources": [
            "native/addon.cc",
            "native/fileops.cc",
            "native/io_context.cc",
            "native/mapped_files.cc",
            "native/sysio.cc",
            "native/thread_exit.cc",
            "native/write_batch.cc",
            "native/test/faults.cc",
            "native/test/powerloss.cc",
            "native/test/seams.cc"
          ]
        }
      ]
    }]
  ]
}
