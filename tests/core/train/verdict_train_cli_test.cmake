# Runs verdict-train for a few steps and checks what it printed and wrote.
file(REMOVE_RECURSE "${OUTPUT}" "${OUTPUT}.run")
execute_process(
  COMMAND "${VERDICT_TRAIN}" --train "${TRAIN_DATA}" --output "${OUTPUT}" --preset encoder-tiny
          --vocab-size 400 --max-steps 6 --logging_steps 2 --max-length=128 --batch-size 16
          --no-group-by-length
  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "verdict-train exited ${result}:\n${out}\n${err}")
endif()
foreach(expected "data: " "step 6/6" "eval @6" "model written to")
  string(FIND "${out}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "verdict-train printed no \"${expected}\":\n${out}")
  endif()
endforeach()
foreach(file config.json model.safetensors tokenizer.model reward_stats.json training_args.json)
  if(NOT EXISTS "${OUTPUT}/${file}")
    message(FATAL_ERROR "verdict-train wrote no ${file} in ${OUTPUT}")
  endif()
endforeach()
# The flags are `verdict submit`'s (dashes; absl's underscores work too), and the defaults the
# server's: training_args.json records what ran.
file(READ "${OUTPUT}/training_args.json" args)
foreach(expected "\"max_length\": 128" "\"batch_size\": 16" "\"group_by_length\": false"
        "\"truncation\": \"truncate\"" "\"save_steps\": 500" "\"learning_rate\": 0.0001")
  string(FIND "${args}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "training_args.json lacks ${expected}:\n${args}")
  endif()
endforeach()
# A bad flag value is refused with a message naming it, and a non-zero exit.
execute_process(
  COMMAND "${VERDICT_TRAIN}" --train "${TRAIN_DATA}" --output "${OUTPUT}-bad" --lr -1
  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "learning_rate" at)
if(result EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "verdict-train accepted --lr -1 (exit ${result}): ${err}")
endif()
file(REMOVE_RECURSE "${OUTPUT}" "${OUTPUT}.run")
