{
  "targets": [
    {
      "target_name": "walrus",
      "sources": [
        "native/addon.cc",
        "native/args.cc",
        "native/checksums.cc",
        "native/crc32c.cc",
        "native/errors.cc",
        "native/fileops.cc",
        "native/io_context.cc",
        "native/mapped_files.cc",
        "native/powerloss.cc",
        "native/sysio.cc",
        "native/uring.cc",
        "native/write_batch.cc"
      ],
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
    }
  ]
}
