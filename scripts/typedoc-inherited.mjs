// A TypeDoc plugin for the markdown reference (typedoc.markdown.json): each inherited member is
// documented once, where it is declared.
//
// - An interface's inherited members keep their row in its table (name, type, default), and their
//   description is a link to the member where it is written: the options tables of the functions
//   (InputJacobianOptions, …) point to ClassifierOptions.modelOutput and RunOptions.memoryBudgetMB
//   … instead of repeating their paragraphs.
// - A class's inherited members, which the markdown renders as whole sections, are left out: the
//   error classes say what they add (their name and kind) and link to InfogeoError ("Extends").
//
// Members of Node's and TypeScript's own Error (captureStackTrace, stackTraceLimit, …) are not
// documented at all: typedoc.json's excludeExternals leaves them out.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(
    Converter.EVENT_RESOLVE_END,
    (context) => {
      const project = context.project;
      for (const cls of project.getReflectionsByKind(ReflectionKind.Class)) {
        for (const member of [...(cls.children ?? [])]) {
          if (member.inheritedFrom && !member.overwrites) project.removeReflection(member);
        }
      }
      for (const iface of project.getReflectionsByKind(ReflectionKind.Interface)) {
        for (const member of iface.children ?? []) {
          const from = member.inheritedFrom;
          const source = from?.reflection;
          if (!from || !source || !member.comment) continue;
          const comment = member.comment.clone();
          comment.summary = [
            { kind: 'text', text: 'As in ' },
            { kind: 'inline-tag', tag: '@link', text: from.name, target: source },
            { kind: 'text', text: '.' },
          ];
          member.comment = comment;
        }
      }
    },
    -50, // after ImplementsPlugin (0) marks what is inherited, before GroupPlugin (-100) groups the members
  );
}
