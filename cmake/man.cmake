# cmake/man.cmake - man pages from the commands' own --help (help2man):
# tsl.1.gz, and tsl-COMMAND.1.gz for every command `tsl --help` lists.
#
#   cmake -DTSL=path/to/tsl -DHELP2MAN=path -DOUT=dir -P man.cmake
#
# The help texts are the one source: a page can never drift from the
# binary it documents.  Run at build time by the `man` target.
foreach(v TSL HELP2MAN OUT)
  if(NOT ${v})
    message(FATAL_ERROR "man.cmake: -D${v}=... is required")
  endif()
endforeach()
file(MAKE_DIRECTORY ${OUT})

execute_process(COMMAND ${TSL} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "man.cmake: ${TSL} --help failed")
endif()
# The command table: the lines between "commands:" and the blank line after.
string(REGEX MATCH "\ncommands:\n(([^\n]+\n)+)" block "${help}")
string(REGEX MATCHALL "\n  [a-z][a-z-]+ " names "\n${CMAKE_MATCH_1}")
set(commands "")
foreach(n ${names})
  string(STRIP "${n}" n)
  list(APPEND commands ${n})
endforeach()
if(NOT commands)
  message(FATAL_ERROR "man.cmake: no commands found in `tsl --help`")
endif()

set(see ".BR tsl (1),\n")
foreach(c ${commands})
  string(APPEND see ".BR tsl-${c} (1),\n")
endforeach()
file(WRITE ${OUT}/see-also.h2m
  "[SEE ALSO]\n${see}the systemd unit tsl.service, and the documentation in\n"
  "/usr/share/doc/tsl and docs/ of the source tree.\n")

execute_process(
  COMMAND ${HELP2MAN} --no-info --section=1
          "--name=which ITMS Task Servers a Client Task Agent may use, in order"
          --include=${OUT}/see-also.h2m --output=${OUT}/tsl.1 ${TSL}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "man.cmake: help2man failed for tsl")
endif()

# A command's page: help2man runs "TSL COMMAND --help" through a tiny
# wrapper named tsl-COMMAND, so the page is titled and named for it.
foreach(c ${commands})
  set(wrap ${OUT}/wrap/tsl-${c})
  file(WRITE ${wrap} "#!/bin/sh\nif [ \"$1\" = --version ]; then exec '${TSL}' --version; fi\n"
                     "exec '${TSL}' ${c} \"$@\"\n")
  file(CHMOD ${wrap} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                 GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  string(REGEX MATCH "\n  ${c} +([^\n]+)" line "${help}")
  execute_process(
    COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1 "--name=${CMAKE_MATCH_1}"
            "--include=${OUT}/see-also.h2m" --output=${OUT}/tsl-${c}.1 ${wrap}
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "man.cmake: help2man failed for tsl ${c}")
  endif()
endforeach()
file(REMOVE_RECURSE ${OUT}/wrap)

# Compressed, as Debian ships man pages; -n keeps the file reproducible.
file(GLOB pages ${OUT}/*.1)
execute_process(COMMAND gzip -9nf ${pages} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "man.cmake: gzip failed")
endif()
file(TOUCH ${OUT}/stamp)
